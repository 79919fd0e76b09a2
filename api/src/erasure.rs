//! Erasure of a customer's personal data (crypto-shredding; PIPL art. 47, GDPR art. 17): the
//! erasure event is appended first (who, when, why; no personal data), and once it is durable
//! every data key the customer's records name is destroyed, so the sealed personal data in
//! every record, export and backup of the log can no longer be read, while every hash and
//! proof still verifies.
//!
//! Invariants: keys are destroyed only after the event is durable; if destroying fails or
//! the process dies in between, the event is still in the log, and [`apply_recorded`]
//! destroys the keys on the next start. The same applies to a key store restored from a
//! backup taken before an erasure: erasures recorded in the log win.

use oacis_domain::customer::{Customer, CustomerCommand};
use oacis_domain::ids::CustomerId;
use oacis_eventlog::{EventStore, StreamId, Version};

use crate::command::{CommandBus, CommandError, Executed, Origin};

/// Erases `customer`'s personal data: the `CustomerPersonalDataErased` event (none if it was
/// erased before), then its data keys.
///
/// # Errors
/// The command's errors (NOT_FOUND for an unknown customer, VALIDATION for a blank reason);
/// [`CommandError::Keys`] if the keys could not be destroyed (the event is recorded, and the
/// keys are destroyed on the next start or the next attempt).
pub async fn erase_customer(
    bus: &CommandBus,
    customer: CustomerId,
    reason: String,
    origin: &Origin,
) -> Result<Executed, CommandError> {
    let executed =
        bus.execute::<Customer>(customer.stream(), CustomerCommand::ErasePersonalData { reason }, origin).await?;
    destroy_keys(bus, customer).await?;
    Ok(executed)
}

/// Destroys every key `customer`'s records name (read from its stream) and marks it erased.
/// Answers how many keys were destroyed.
async fn destroy_keys(bus: &CommandBus, customer: CustomerId) -> Result<usize, CommandError> {
    let store = bus.store();
    let Some(keys) = store.keys().cloned() else { return Ok(0) };
    let stream = StreamId::new(customer.stream()).map_err(CommandError::Refused)?;
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
    let subject = customer.stream();
    tokio::task::spawn_blocking(move || keys.erase(&subject, &ids))
        .await
        .map_err(|e| CommandError::Keys(e.to_string()))?
        .map_err(|e| CommandError::Keys(e.to_string()))
}

/// Destroys the keys of every customer whose erasure the log records (from the replayed
/// views). Answers how many keys were destroyed: none, unless the process stopped between
/// an erasure event and its keys' destruction, or the key store was restored from a backup
/// older than an erasure.
///
/// # Errors
/// [`CommandError::Keys`] when the key store cannot be rewritten; reading the log's errors.
pub async fn apply_recorded(bus: &CommandBus) -> Result<usize, CommandError> {
    if bus.store().keys().is_none() {
        return Ok(0);
    }
    let erased: Vec<CustomerId> =
        bus.projections().read(|views| views.directory.erased().collect()).map_err(CommandError::Views)?;
    let mut destroyed = 0;
    for customer in erased {
        destroyed += destroy_keys(bus, customer).await?;
    }
    Ok(destroyed)
}
