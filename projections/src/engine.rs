//! The engine: replay the whole log into a fresh set of views at start, then follow the
//! subscription, recording the last seq applied; `wait_for` gives read-your-writes.
//!
//! Invariants:
//! - The views apply every record exactly once, in seq order (the subscription's guarantee).
//! - On an error (undecodable event, view disagreement, store failure) the follower stops at
//!   that seq and every waiter gets the error; nothing is skipped.
//! - Views are only read under the lock, never across an await.

use std::sync::{Arc, RwLock};

use oacis_domain::{Aggregate, DomainEvent};
use oacis_eventlog::{EventStore, Record, Seq, StreamId, Subscription, Version};
use tokio::sync::watch;

use crate::decode::{decode, decode_ref, DomainRecord};
use crate::error::ProjectionError;
use crate::view::View;
use crate::views::access::AccessDirectory;
use crate::views::analytics::Analytics;
use crate::views::audit::Audit;
use crate::views::cases::CaseList;
use crate::views::directory::CustomerDirectory;
use crate::views::tasks::TaskBoard;
use crate::views::timeline::Timeline;

/// Records read per page while replaying: enough to amortise a page's hand-offs between
/// threads, small enough that the pages in flight stay in the allocator's and CPU's caches.
const REPLAY_PAGE: usize = 2_000;

/// Pages being read and decoded while the oldest is applied.
const PAGES_IN_FLIGHT: usize = 3;

/// Every view, and the last seq they applied.
#[derive(Debug, Default)]
pub struct Views {
    /// Customer directory.
    pub directory: CustomerDirectory,
    /// Task board.
    pub tasks: TaskBoard,
    /// Users, departments, roles, grants, sessions.
    pub access: AccessDirectory,
    /// Analytics.
    pub analytics: Analytics,
    /// Audit trails and security alerts.
    pub audit: Audit,
    /// Service cases.
    pub cases: CaseList,
    /// Customer timelines.
    pub timeline: Timeline,
    applied: Seq,
}

impl Views {
    /// The last seq applied.
    #[must_use]
    pub fn applied(&self) -> Seq {
        self.applied
    }

    /// Applies one record to every view.
    pub fn apply(&mut self, record: &Record) -> Result<(), ProjectionError> {
        self.apply_decoded(&decode(record)?)
    }

    /// Applies one decoded record to every view; records must come in seq order, gapless.
    pub fn apply_decoded(&mut self, record: &DomainRecord) -> Result<(), ProjectionError> {
        let expected = self.applied.next();
        if record.seq != expected {
            return Err(ProjectionError::Apply {
                view: "engine",
                seq: record.seq,
                reason: format!("expected seq {expected}"),
            });
        }
        let views: [&mut dyn View; 7] = [
            &mut self.directory,
            &mut self.tasks,
            &mut self.access,
            &mut self.analytics,
            &mut self.audit,
            &mut self.cases,
            &mut self.timeline,
        ];
        for view in views {
            view.apply(record).map_err(|reason| ProjectionError::Apply {
                view: view.name(),
                seq: record.seq,
                reason,
            })?;
        }
        self.applied = record.seq;
        Ok(())
    }

    /// The canonical dump of every view.
    #[must_use]
    pub fn dump(&self) -> String {
        let mut out = format!("applied {}\n", self.applied);
        let views: [&dyn View; 7] =
            [&self.directory, &self.tasks, &self.access, &self.analytics, &self.audit, &self.cases, &self.timeline];
        for view in views {
            view.dump(&mut out);
        }
        out
    }

    /// BLAKE3 of the canonical dump, in hex: equal hashes mean equal views.
    #[must_use]
    pub fn hash(&self) -> String {
        blake3::hash(self.dump().as_bytes()).to_hex().to_string()
    }

    /// Replays the log from its start up to and including `until` (or its head) into fresh
    /// views, calling `progress` with each page's last seq. This is also how analytics "as of"
    /// a past seq are computed: the cost is one pass over the log up to that seq.
    pub async fn replay<S: EventStore>(
        store: &S,
        until: Option<Seq>,
        progress: &mut (dyn FnMut(Seq) + Send),
    ) -> Result<Views, ProjectionError> {
        // Seqs are gapless, so every page's range is known in advance: up to
        // `PAGES_IN_FLIGHT` pages are read and decoded at once on blocking threads while this
        // task applies the oldest, and pages are applied in order because their handles are
        // queued in order. (`apply_decoded` refuses any gap, so a short page cannot slip by.)
        let until = until.unwrap_or_else(|| store.head().seq).min(store.head().seq);
        let mut in_flight = InFlight::default();
        let spare = SparePages::default();
        let mut next = Seq::FIRST;
        let mut views = Views::default();
        loop {
            while in_flight.0.len() < PAGES_IN_FLIGHT && next <= until {
                in_flight.0.push_back(tokio::spawn(read_and_decode(store.clone(), next, until, spare.clone())));
                next = Seq(next.0.saturating_add(REPLAY_PAGE as u64));
            }
            let Some(page) = in_flight.0.pop_front() else { break };
            let mut page = page.await.map_err(|_| ProjectionError::Stopped(views.applied))??;
            for record in page.drain(..) {
                views.apply_decoded(&record?)?;
            }
            spare.put(page);
            progress(views.applied);
        }
        Ok(views)
    }
}

/// The pages being read and decoded, oldest first. Dropped early (an error, or the replay
/// itself dropped), it stops the pages still being read.
#[derive(Default)]
struct InFlight(std::collections::VecDeque<tokio::task::JoinHandle<Result<DecodedPage, ProjectionError>>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        for page in &self.0 {
            page.abort();
        }
    }
}

/// A page of decoded records; a record that could not be decoded is kept as its error.
type DecodedPage = Vec<Result<DomainRecord, ProjectionError>>;

/// Emptied page buffers, handed back once a page is applied: a page of decoded records is
/// close to a megabyte, and a fresh one every page would fault in fresh memory
/// each time (a quarter of a replay's time in a fresh process).
#[derive(Debug, Clone, Default)]
struct SparePages(Arc<std::sync::Mutex<Vec<DecodedPage>>>);

impl SparePages {
    fn take(&self) -> DecodedPage {
        self.0.lock().ok().and_then(|mut pages| pages.pop()).unwrap_or_default()
    }

    fn put(&self, mut page: DecodedPage) {
        page.clear();
        if let Ok(mut pages) = self.0.lock() {
            pages.push(page);
        }
    }
}

/// Reads and decodes the page of records from `from` (at most `REPLAY_PAGE`, none after
/// `until`) on a blocking thread, decoding each record straight from the store's bytes into
/// a recycled buffer. A record that cannot be decoded is kept as its error, where the applier
/// stops.
async fn read_and_decode<S: EventStore>(
    store: S,
    from: Seq,
    until: Seq,
    spare: SparePages,
) -> Result<DecodedPage, ProjectionError> {
    let max = usize::try_from(until.0 - from.0 + 1).unwrap_or(REPLAY_PAGE).min(REPLAY_PAGE);
    Ok(store.read_all_with(from, max, spare.take(), |record| decode_ref(&record)).await?)
}

/// Where the follower stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Following {
    /// Applied up to this seq.
    At(Seq),
    /// Stopped after this seq with this error.
    Failed(Seq, String),
}

impl Following {
    /// The last seq applied.
    fn seq(&self) -> Seq {
        match self {
            Following::At(seq) | Following::Failed(seq, _) => *seq,
        }
    }
}

/// The live views: built at start, then following the log.
#[derive(Debug)]
pub struct Projections {
    views: Arc<RwLock<Views>>,
    state: watch::Receiver<Following>,
    follower: tokio::task::JoinHandle<()>,
}

impl Drop for Projections {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl Projections {
    /// Replays the log, then follows it from a background task.
    pub async fn start<S: EventStore>(
        store: &S,
        progress: &mut (dyn FnMut(Seq) + Send),
    ) -> Result<Self, ProjectionError> {
        let views = Views::replay(store, None, progress).await?;
        let applied = views.applied;
        let views = Arc::new(RwLock::new(views));
        let (tx, state) = watch::channel(Following::At(applied));
        let mut feed = store.subscribe(applied.next());
        let shared = views.clone();
        let follower = tokio::spawn(async move {
            while let Some(record) = feed.next().await {
                let outcome = record.map_err(ProjectionError::from).and_then(|record| match shared.write() {
                    Ok(mut views) => views.apply(&record).map(|()| record.seq),
                    Err(_) => Err(ProjectionError::Stopped(record.seq)),
                });
                match outcome {
                    Ok(seq) => {
                        tx.send_replace(Following::At(seq));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "views stopped following the log");
                        let at = tx.borrow().seq();
                        tx.send_replace(Following::Failed(at, e.to_string()));
                        return;
                    }
                }
            }
        });
        Ok(Projections { views, state, follower })
    }

    /// Waits until the views have applied `seq` (read-your-writes), or fails if they stopped.
    pub async fn wait_for(&self, seq: Seq) -> Result<(), ProjectionError> {
        let mut state = self.state.clone();
        loop {
            match &*state.borrow_and_update() {
                Following::At(at) if *at >= seq => return Ok(()),
                Following::Failed(at, reason) => {
                    return Err(ProjectionError::Apply { view: "engine", seq: at.next(), reason: reason.clone() })
                }
                Following::At(_) => {}
            }
            if state.changed().await.is_err() {
                let at = state.borrow().seq();
                return Err(ProjectionError::Stopped(at));
            }
        }
    }

    /// The last seq the views applied.
    #[must_use]
    pub fn applied(&self) -> Seq {
        self.state.borrow().seq()
    }

    /// Reads the views.
    pub fn read<R>(&self, f: impl FnOnce(&Views) -> R) -> Result<R, ProjectionError> {
        let views = self.views.read().map_err(|_| ProjectionError::Stopped(self.applied()))?;
        Ok(f(&views))
    }
}

/// The state of one aggregate as of `seq`: its stream folded up to the last event at or
/// before `seq`. Cost: one read of the stream.
pub async fn state_as_of<A: Aggregate, S: EventStore>(
    store: &S,
    stream: &StreamId,
    seq: Seq,
) -> Result<A::State, ProjectionError> {
    let mut state = A::State::default();
    let mut from = Version(1);
    loop {
        let page = store.read_stream(stream, from, REPLAY_PAGE).await?;
        let Some(last) = page.last() else { return Ok(state) };
        from = last.version.next();
        for record in page.iter().take_while(|r| r.seq <= seq) {
            let event = A::Event::decode(record.kind.as_str(), record.schema, &record.payload)
                .map_err(|e| ProjectionError::Decode { seq: record.seq, reason: e.to_string() })?;
            state = A::evolve(state, &event);
        }
        if page.iter().any(|r| r.seq > seq) {
            return Ok(state);
        }
    }
}

/// The last seq recorded at or before `at`, for as-of-time reads (`Seq::ZERO` if none).
/// `recorded_at` never decreases along `seq`, so this is a binary search: O(log n) reads of
/// one record.
pub async fn seq_at_time<S: EventStore>(store: &S, at: oacis_eventlog::Timestamp) -> Result<Seq, ProjectionError> {
    // Invariant: seq `low` is at or before `at` (or is zero); every seq above `high` is after.
    let (mut low, mut high) = (0u64, store.head().seq.0);
    while low < high {
        let mid = low + (high - low).div_ceil(2);
        let page = store.read_all(Seq(mid), 1).await?;
        match page.first() {
            Some(record) if record.recorded_at <= at => low = mid,
            _ => high = mid - 1,
        }
    }
    Ok(Seq(low))
}
