//! Erasure of a subject's personal data (crypto-shredding; PIPL art. 47, GDPR art. 17), for
//! customers and users alike: the erasure event is appended first (who, when, why; no
//! personal data), and once it is durable every data key the subject's records name is
//! destroyed, so the sealed personal data in every record, export and backup of the log can
//! no longer be read, while every hash and proof still verifies.
//!
//! Invariants: keys are destroyed only after the event is durable; if destroying fails or
//! the process dies in between, the event is still in the log, and [`apply_recorded`]
//! destroys the keys on the next start. The same applies to a key store restored from a
//! backup taken before an erasure: erasures recorded in the log win.
//!
//! On PostgreSQL the keys are shared by the servers on one log: an erasure also makes the
//! keys' shared rows tombstones, and every server's erasure follower ([`follow`]) destroys its
//! own copies as the erasure's event reaches it.

use oacis_domain::customer::{Customer, CustomerCommand};
use oacis_domain::ids::{CustomerId, UserId};
use oacis_domain::user::{User, UserCommand};
use oacis_eventlog::{EventStore, StreamId, Subscription, Version};

use crate::command::{on, CommandBus, CommandError, Executed, Origin, Step};

/// Whose personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// A customer.
    Customer(CustomerId),
    /// A user.
    User(UserId),
}

impl Subject {
    fn stream(self) -> String {
        match self {
            Subject::Customer(id) => id.stream(),
            Subject::User(id) => id.stream(),
        }
    }
}

/// Erases `subject`'s personal data: the `CustomerPersonalDataErased` or
/// `UserPersonalDataErased` event (none if it was erased before), then its data keys.
///
/// # Errors
/// The command's errors (NOT_FOUND for an unknown subject, VALIDATION for a blank reason);
/// [`CommandError::Keys`] if the keys could not be destroyed (the event is recorded, and the
/// keys are destroyed on the next start or the next attempt).
pub async fn erase(
    bus: &CommandBus,
    subject: Subject,
    reason: String,
    origin: &Origin,
) -> Result<Executed, CommandError> {
    let (streams, steps): (Vec<String>, Vec<Box<dyn Step>>) = match subject {
        Subject::Customer(id) => {
            // The customers merged into it are the same person's other records: erased with it,
            // in one atomic append, so that no restart leaves one of them readable.
            let merged = bus.projections().read(|v| v.directory.merged_into(id)).map_err(CommandError::Views)?;
            let streams: Vec<String> = std::iter::once(id).chain(merged).map(|c| c.stream()).collect();
            let erase = |s: &String| on::<Customer>(s, CustomerCommand::ErasePersonalData { reason: reason.clone() });
            let steps = streams.iter().map(erase).collect();
            (streams, steps)
        }
        Subject::User(id) => {
            (vec![id.stream()], vec![on::<User>(id.stream(), UserCommand::ErasePersonalData { reason })])
        }
    };
    let executed = bus.execute_steps(steps, origin).await?;
    for stream in streams {
        destroy_keys(bus, stream).await?;
    }
    Ok(executed)
}

/// Destroys every key the records of the subject with stream `name` name (read from its
/// stream), marks it erased, and on PostgreSQL makes the keys' shared rows tombstones.
/// Answers how many keys were destroyed here.
async fn destroy_keys(bus: &CommandBus, name: String) -> Result<usize, CommandError> {
    let store = bus.store();
    let Some(keys) = store.keys().cloned() else { return Ok(0) };
    let stream = StreamId::new(name.clone()).map_err(CommandError::Refused)?;
    let mut ids = Vec::new();
    let mut from = Version(1);
    loop {
        let page = store.read_stream(&stream, from, 1_000).await.map_err(CommandError::Store)?;
        let Some(last) = page.last() else { break };
        from = last.version.next();
        ids.extend(page.iter().flat_map(|r| oacis_eventlog::seal::key_ids(&r.payload)));
    }
    ids.sort_unstable();
    ids.dedup();
    let shared = ids.clone();
    let destroyed = tokio::task::spawn_blocking(move || keys.erase(&name, &ids))
        .await
        .map_err(|e| CommandError::Keys(e.to_string()))?
        .map_err(|e| CommandError::Keys(e.to_string()))?;
    store.share_erasure(&shared).await.map_err(|e| CommandError::Keys(e.to_string()))?;
    Ok(destroyed)
}

/// The event kinds that record an erasure.
const ERASURES: [&str; 2] = ["CustomerPersonalDataErased", "UserPersonalDataErased"];

/// On PostgreSQL, where other servers append to the same log: follows the log from its head
/// and destroys this server's keys of every subject whose erasure event arrives (an erasure
/// made here was done already, and doing it again destroys nothing). Nothing on sled.
pub fn follow(bus: &std::sync::Arc<CommandBus>) -> Option<tokio::task::JoinHandle<()>> {
    bus.store().sled().is_none().then(|| {
        let bus = bus.clone();
        tokio::spawn(async move {
            let mut feed = bus.store().subscribe(bus.store().head().seq.next());
            while let Some(record) = feed.next().await {
                let record = match record {
                    Ok(record) => record,
                    Err(e) => {
                        tracing::error!(error = %e, "the erasure follower cannot read the log; erasures from other servers are applied at the next start");
                        return;
                    }
                };
                if ERASURES.contains(&record.kind.as_str()) {
                    if let Err(e) = destroy_keys(&bus, record.stream.as_str().to_owned()).await {
                        tracing::error!(error = %e, stream = %record.stream, "could not destroy the keys of an erasure made by another server; retried at the next start");
                    }
                }
            }
        })
    })
}

/// Destroys the keys of every customer and user whose erasure the log records (from the
/// replayed views). Answers how many keys were destroyed: none, unless the process stopped
/// between an erasure event and its keys' destruction, or the key store was restored from a
/// backup older than an erasure.
///
/// # Errors
/// [`CommandError::Keys`] when the key store cannot be rewritten; reading the log's errors.
pub async fn apply_recorded(bus: &CommandBus) -> Result<usize, CommandError> {
    let Some(keys) = bus.store().keys().cloned() else { return Ok(0) };
    let erased: Vec<Subject> = bus
        .projections()
        .read(|views| {
            let customers = views.directory.erased().map(Subject::Customer);
            let users = views.access.users().filter(|u| u.erased).map(|u| Subject::User(u.id));
            customers.chain(users).collect()
        })
        .map_err(CommandError::Views)?;
    let mut destroyed = 0;
    // A subject the key store marks erased lost every key its records named in the same
    // rewrite, and is given none after it: only the others need their streams read.
    for subject in erased.into_iter().filter(|s| !keys.is_erased(&s.stream())) {
        destroyed += destroy_keys(bus, subject.stream()).await?;
    }
    Ok(destroyed)
}
