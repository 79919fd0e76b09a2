//! The engine: replay the log into a fresh set of views at start (or into views read from a
//! snapshot, from the seq after theirs), then follow the subscription, recording the last
//! seq applied; `wait_for` gives read-your-writes.
//!
//! Invariants:
//! - Each view applies every record exactly once, in seq order (the subscription's guarantee).
//!   A replay applies the customer directory and the other views on two threads, page by
//!   page; they share no state, so the result is the one a record-by-record fold gives.
//! - On an error (undecodable event, view disagreement, store failure) the follower stops at
//!   that seq and every waiter gets the error; nothing is skipped.
//! - Views are only read under the lock, never across an await.

use std::sync::{Arc, RwLock};

use oacis_domain::Aggregate;
use oacis_eventlog::keys::KeyStore;
use oacis_eventlog::{EventStore, Record, Seq, StreamId, Subscription, Version};
use tokio::sync::watch;

use crate::decode::{decode, decode_event, decode_ref, DomainRecord};
use crate::error::ProjectionError;
use crate::view::View;
use crate::views::access::AccessDirectory;
use crate::views::analytics::Analytics;
use crate::views::approvals::Approvals;
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
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Views {
    /// Customer directory (a section of its own in a snapshot, see `snapshot.rs`).
    #[serde(skip)]
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
    /// Approval definitions, approvals and their lists (as JSON inside a snapshot: they hold
    /// the domain's approval types, whose serde shapes are made for JSON).
    #[serde(with = "crate::snapshot::as_json")]
    pub approvals: Approvals,
    applied: Seq,
}

impl Views {
    /// The last seq applied.
    #[must_use]
    pub fn applied(&self) -> Seq {
        self.applied
    }

    /// Applies one record to every view, opening its personal data with `keys`.
    pub fn apply(&mut self, record: &Record, keys: Option<&KeyStore>) -> Result<(), ProjectionError> {
        self.apply_decoded(&decode(record, keys)?)
    }

    /// Applies one decoded record to every view; records must come in seq order, gapless.
    pub fn apply_decoded(&mut self, record: &DomainRecord) -> Result<(), ProjectionError> {
        let applied = check_follows(self.applied, [record])?;
        let views: [&mut dyn View; 8] = [
            &mut self.directory,
            &mut self.tasks,
            &mut self.access,
            &mut self.analytics,
            &mut self.audit,
            &mut self.cases,
            &mut self.timeline,
            &mut self.approvals,
        ];
        apply_each(views, [record])?;
        self.applied = applied;
        Ok(())
    }

    /// The canonical dump of every view.
    #[must_use]
    pub fn dump(&self) -> String {
        let mut out = format!("applied {}\n", self.applied);
        let views: [&dyn View; 8] = [
            &self.directory,
            &self.tasks,
            &self.access,
            &self.analytics,
            &self.audit,
            &self.cases,
            &self.timeline,
            &self.approvals,
        ];
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
    /// views, calling `progress` with each page's last seq as the page is handed to the views.
    /// This is also how analytics "as of" a past seq are computed: the cost is one pass over
    /// the log up to that seq.
    pub async fn replay<S: EventStore>(
        store: &S,
        until: Option<Seq>,
        progress: &mut (dyn FnMut(Seq) + Send),
    ) -> Result<Views, ProjectionError> {
        Views::default().replay_onto(store, until, progress).await
    }

    /// Applies the records after the ones these views applied, up to and including `until`
    /// (or the log's head), as [`Views::replay`] does from the start: how a start goes on
    /// from a snapshot (`snapshot.rs`).
    pub async fn replay_onto<S: EventStore>(
        self,
        store: &S,
        until: Option<Seq>,
        progress: &mut (dyn FnMut(Seq) + Send),
    ) -> Result<Views, ProjectionError> {
        // Seqs are gapless, so every page's range is known in advance: up to
        // `PAGES_IN_FLIGHT` pages are read and decoded at once on blocking threads, and this
        // task hands each page, in order, to two appliers on threads of their own: one for the
        // customer directory (the costliest view), one for every other view. The views are
        // independent, so each still sees every record in order, and neither waits for the
        // other. (The seqs are checked here, so a short page cannot slip by.)
        let until = until.unwrap_or_else(|| store.head().seq).min(store.head().seq);
        let spare = SparePages::default();
        let Views { directory, tasks, access, analytics, audit, cases, timeline, approvals, applied } = self;
        let (to_directory, directory) = Lane::start(directory, |d| [d], spare.clone())?;
        let (to_others, others) = Lane::start(
            (tasks, access, analytics, audit, cases, timeline, approvals),
            |(tasks, access, analytics, audit, cases, timeline, approvals)| {
                [tasks, access, analytics, audit, cases, timeline, approvals]
            },
            spare.clone(),
        )?;
        let mut in_flight = InFlight::default();
        let mut next = applied.next();
        let mut forwarded = applied;
        let forwarding: Result<(), ProjectionError> = async {
            loop {
                while in_flight.0.len() < PAGES_IN_FLIGHT && next <= until {
                    in_flight.0.push_back(tokio::spawn(read_and_decode(store.clone(), next, until, spare.clone())));
                    next = Seq(next.0.saturating_add(REPLAY_PAGE as u64));
                }
                let Some(page) = in_flight.0.pop_front() else { return Ok(()) };
                let mut page = page.await.map_err(|_| ProjectionError::Stopped(forwarded))??;
                // The records before an undecodable one are applied; then the replay stops.
                let undecodable = page.iter().position(Result::is_err).map(|at| {
                    let error = page.swap_remove(at);
                    page.truncate(at);
                    error
                });
                forwarded = check_follows(forwarded, page.iter().flatten())?;
                let page = Arc::new(page);
                if to_directory.send(page.clone()).await.is_err() || to_others.send(page).await.is_err() {
                    // An applier stopped on an error, which it reports below.
                    return Ok(());
                }
                progress(forwarded);
                if let Some(Err(e)) = undecodable {
                    return Err(e);
                }
            }
        }
        .await;
        drop((to_directory, to_others));
        match (directory.finish().await, others.finish().await, forwarding) {
            (Ok(directory), Ok((tasks, access, analytics, audit, cases, timeline, approvals)), Ok(())) => {
                Ok(Views { directory, tasks, access, analytics, audit, cases, timeline, approvals, applied: forwarded })
            }
            // An applier's error comes at or before the last seq handed to it, so before any
            // error of the forwarding; of the appliers' errors, the earlier seq is reported.
            (directory, others, forwarding) => Err([directory.err(), others.err(), forwarding.err()]
                .into_iter()
                .flatten()
                .min_by_key(|e| match e {
                    ProjectionError::Apply { seq, .. } => *seq,
                    _ => Seq(u64::MAX),
                })
                .unwrap_or(ProjectionError::Stopped(forwarded))),
        }
    }
}

/// Checks that `records` follow `last` without a gap; returns the new last seq.
fn check_follows<'a>(last: Seq, records: impl IntoIterator<Item = &'a DomainRecord>) -> Result<Seq, ProjectionError> {
    let mut expected = last;
    for record in records {
        expected = expected.next();
        if record.seq != expected {
            return Err(ProjectionError::Apply {
                view: "engine",
                seq: record.seq,
                reason: format!("expected seq {expected}"),
            });
        }
    }
    Ok(expected)
}

/// Pages queued for one applier beyond the one it is applying.
const LANE_QUEUE: usize = 2;

/// What a lane's thread ends with: its views or the error that stopped them, or its panic.
type LaneOutcome<T> = std::thread::Result<Result<T, ProjectionError>>;

/// Some of the views, applying a replay's pages on a thread of their own. A plain thread,
/// not one of the runtime's blocking threads: a lane waits for pages that the blocking threads
/// read, so with a small blocking pool the two could wait on each other for ever.
struct Lane<T>(tokio::sync::oneshot::Receiver<LaneOutcome<T>>);

impl<T: Send + 'static> Lane<T> {
    /// Starts applying the pages sent to the returned queue to `views` (seen as a list of
    /// views through `each`); a finished page goes back to `spare` once both lanes are done.
    fn start<const N: usize>(
        mut views: T,
        each: fn(&mut T) -> [&mut dyn View; N],
        spare: SparePages,
    ) -> Result<(tokio::sync::mpsc::Sender<Arc<DecodedPage>>, Lane<T>), ProjectionError> {
        let (pages, mut queue) = tokio::sync::mpsc::channel::<Arc<DecodedPage>>(LANE_QUEUE);
        let (done, outcome) = tokio::sync::oneshot::channel();
        let apply = move || -> Result<T, ProjectionError> {
            while let Some(page) = queue.blocking_recv() {
                apply_each(each(&mut views), page.iter().flatten())?;
                if let Some(page) = Arc::into_inner(page) {
                    // Its records are dropped by the reading task that takes it next.
                    spare.put(page);
                }
            }
            Ok(views)
        };
        std::thread::Builder::new()
            .name("oacis-replay".into())
            .spawn(move || {
                let _ = done.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(apply)));
            })
            .map_err(|e| ProjectionError::Thread(e.to_string()))?;
        Ok((pages, Lane(outcome)))
    }

    /// The views once every page sent is applied, or the error that stopped them.
    async fn finish(self) -> Result<T, ProjectionError> {
        match self.0.await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(ProjectionError::Thread("a replay thread ended without an answer".into())),
        }
    }
}

/// Applies each record, in order, to each of `views`, stopping at the first error.
fn apply_each<'a, const N: usize>(
    mut views: [&mut dyn View; N],
    records: impl IntoIterator<Item = &'a DomainRecord>,
) -> Result<(), ProjectionError> {
    for record in records {
        for view in &mut views {
            view.apply(record).map_err(|reason| ProjectionError::Apply {
                view: view.name(),
                seq: record.seq,
                reason,
            })?;
        }
    }
    Ok(())
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
    /// An empty page buffer; the records left in a recycled one are dropped here, by the
    /// reading task, so that freeing them costs the applying thread nothing.
    fn take(&self) -> DecodedPage {
        let mut page = self.0.lock().ok().and_then(|mut pages| pages.pop()).unwrap_or_default();
        page.clear();
        page
    }

    fn put(&self, page: DecodedPage) {
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
    let keys = store.keys().cloned();
    Ok(store.read_all_with(from, max, spare.take(), move |record| decode_ref(&record, keys.as_deref())).await?)
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
        Projections::start_from(store, Views::default(), progress).await
    }

    /// Applies the records after those `views` applied (all of them, for fresh views; the
    /// ones after a snapshot's seq, for views read from it), then follows the log.
    pub async fn start_from<S: EventStore>(
        store: &S,
        views: Views,
        progress: &mut (dyn FnMut(Seq) + Send),
    ) -> Result<Self, ProjectionError> {
        let views = views.replay_onto(store, None, progress).await?;
        let applied = views.applied;
        let views = Arc::new(RwLock::new(views));
        let (tx, state) = watch::channel(Following::At(applied));
        let mut feed = store.subscribe(applied.next());
        let shared = views.clone();
        let keys = store.keys().cloned();
        let follower = tokio::spawn(async move {
            while let Some(record) = feed.next().await {
                // Decoded (and opened) before the views are locked for writing.
                let decoded = record.map_err(ProjectionError::from).and_then(|r| decode(&r, keys.as_deref()));
                let outcome = decoded.and_then(|record| match shared.write() {
                    Ok(mut views) => views.apply_decoded(&record).map(|()| record.seq),
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

    /// The views themselves, shared (for readers that hold them across a request).
    #[must_use]
    pub fn shared(&self) -> Arc<RwLock<Views>> {
        self.views.clone()
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
            let event: A::Event = decode_event(record, store.keys().map(|k| &**k))?;
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
