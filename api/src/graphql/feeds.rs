//! Live feeds, the subscription root, served over WebSocket (`graphql-transport-ws`):
//! `events` (the log from a position, then each event as it is acknowledged) and
//! `notifications` (the caller's own, from [`crate::live`]).
//!
//! Invariants:
//! - A feed checks its caller's session again before each item and at least every
//!   [`RECHECK`]; once the session has ended (sign-out, revocation, expiry, a locked or
//!   deactivated account) or the permission is gone, it sends one error (UNAUTHENTICATED or
//!   FORBIDDEN) and ends. Masking follows the caller's rights at each item.
//! - `events` delivers every selected event from its position exactly once and in order (the
//!   log's subscription reads from storage, so a consumer behind the head holds no events in
//!   memory); one that has caught up and then falls more than [`MAX_LAG`] events behind the
//!   head is closed with SLOW_CONSUMER and the seq to resume from.
//! - `notifications` hold at most [`crate::live::BACKLOG`] for a slow consumer, which is then
//!   closed with SLOW_CONSUMER.
//! - When the server stops, every feed sends SHUTTING_DOWN and ends.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Context, SimpleObject, Subscription};
use futures_util::stream::{self, Stream};
use oacis_domain::authz::{Permission, Resource};
use oacis_eventlog::{EventStore, Seq, Subscription as _};
use tokio::sync::{broadcast, watch};

use super::error::{ApiError, ApiResult};
use super::insight::EventNode;
use super::{app, caller, request};
use crate::access::Caller;
use crate::live::{Notification, Recipient};
use crate::server::AppState;

/// How often an idle feed checks that its session is still valid.
pub const RECHECK: Duration = Duration::from_secs(1);
/// How far behind the log's head a caught-up `events` feed may fall before it is closed.
pub const MAX_LAG: u64 = 100_000;

/// The subscription root.
#[derive(Default, Debug)]
pub struct LiveSubscription;

/// A notification for the caller.
#[derive(SimpleObject, Debug, Clone)]
pub struct NotificationNode {
    /// `task_assigned`, `case_assigned`, `task_reminder`, `case_follow_up_due` or
    /// `security_alert`.
    pub kind: String,
    /// The record concerned: a task, a case, or (alerts) the account.
    pub record: String,
    /// In words: the task's title, the case's subject, the alert's detail.
    pub detail: String,
    /// When it happened or fell due (RFC 3339, UTC).
    pub at: String,
    /// The log position of the event that raised it; null for due times.
    pub seq: Option<u64>,
}

/// What a feed needs to check its caller again: the state, and the `Authorization` value of
/// the connection (none for the anonymous user).
struct Liveness {
    state: Arc<AppState>,
    authorization: Option<String>,
    stopping: watch::Receiver<bool>,
    open: crate::server::metrics::OpenFeed,
    _slot: crate::live::FeedSlot,
}

impl Liveness {
    fn of(ctx: &Context<'_>, feed: &'static str) -> ApiResult<Liveness> {
        let state = app(ctx)?.clone();
        let authorization = request(ctx)?.authorization.clone();
        let stopping = state.live.stopping();
        let slot = crate::live::FeedSlot::new(&state.live);
        Ok(Liveness { state, authorization, stopping, open: crate::server::metrics::OpenFeed::new(feed), _slot: slot })
    }

    /// The caller now, if its session is still valid and it still holds `permission` (if
    /// any).
    fn caller(&self, permission: Option<Permission>) -> ApiResult<Caller> {
        let caller = self.state.caller_for(self.authorization.as_deref()).ok_or(ApiError::Unauthenticated)?;
        if caller.must_change_password {
            return Err(ApiError::PasswordChangeRequired);
        }
        if let Some(permission) = permission {
            caller.require(permission, &Resource::global())?;
        }
        Ok(caller)
    }

    /// Waits for the next check: a tick of `every`, or the stop signal (then an error).
    async fn tick(&mut self, every: &mut tokio::time::Interval) -> ApiResult<()> {
        // A feed that starts after the stop signal sees it here (`changed` waits for the next).
        if *self.stopping.borrow_and_update() {
            return Err(shutting_down());
        }
        tokio::select! {
            _ = every.tick() => Ok(()),
            _ = self.stopping.changed() => Err(shutting_down()),
        }
    }
}

fn shutting_down() -> ApiError {
    ApiError::FeedClosed {
        code: "SHUTTING_DOWN",
        message: "the server is stopping; subscribe again once it is back".into(),
    }
}

/// Whether a feed has ended (after its closing error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FeedState {
    Open,
    Closed,
}

/// A feed of items that ends after its first error.
trait Feed: Sized + Send + 'static {
    type Item: Send;
    fn state(&mut self) -> &mut FeedState;
    fn live(&self) -> &Liveness;
    fn next(&mut self) -> impl std::future::Future<Output = Option<ApiResult<Self::Item>>> + Send;

    fn into_stream(self) -> impl Stream<Item = ApiResult<Self::Item>> {
        stream::unfold(self, |mut feed| async move {
            if *feed.state() == FeedState::Closed {
                return None;
            }
            let item = feed.next().await?;
            if let Err(e) = &item {
                *feed.state() = FeedState::Closed;
                feed.live().open.closed(e.code());
            }
            Some((item, feed))
        })
    }
}

#[Subscription(name = "Subscription")]
impl LiveSubscription {
    /// Every event of the log from `fromSeq` (default: the next one acknowledged), first those
    /// stored, then each new one as it is acknowledged: each exactly once, in order
    /// (`audit.read` over all records). `streams` and `kinds` keep only those named. Payloads
    /// as in the `events` query: the `personal` parts masked without
    /// `customer.read_personal`. Closed with SLOW_CONSUMER (and the seq to resume from) when
    /// the consumer, once caught up, falls more than 100,000 events behind.
    async fn events(
        &self,
        ctx: &Context<'_>,
        from_seq: Option<u64>,
        streams: Option<Vec<String>>,
        kinds: Option<Vec<String>>,
    ) -> Result<impl Stream<Item = ApiResult<EventNode>>, ApiError> {
        let first = caller(ctx)?;
        first.require(Permission::AuditRead, &Resource::global())?;
        let live = Liveness::of(ctx, "events")?;
        let store = live.state.bus.store().clone();
        let from = from_seq.map_or_else(|| store.head().seq.next(), |s| Seq(s.max(1)));
        let feed = store.subscribe(from);
        let every = tokio::time::interval(RECHECK);
        Ok(EventFeed { live, store, feed, every, streams, kinds, caught_up: false, open: FeedState::Open }
            .into_stream())
    }

    /// The caller's notifications from now on: tasks and cases assigned to it, its tasks'
    /// reminders and its cases' follow-ups as they fall due, and security alerts about its
    /// account (administrators, holders of `user.admin`: every security alert). Closed with
    /// SLOW_CONSUMER when the consumer falls more than 1,024 notifications behind.
    async fn notifications(
        &self,
        ctx: &Context<'_>,
    ) -> Result<impl Stream<Item = ApiResult<NotificationNode>>, ApiError> {
        caller(ctx)?;
        let live = Liveness::of(ctx, "notifications")?;
        let receiver = live.state.live.receiver();
        let every = tokio::time::interval(RECHECK);
        Ok(NotificationFeed { live, receiver, every, open: FeedState::Open }.into_stream())
    }
}

/// SLOW_CONSUMER (with the seq to resume from) when a feed that has caught up is about to
/// send `seq` while the log's head is more than [`MAX_LAG`] events further.
fn within_lag(caught_up: bool, head: u64, seq: u64) -> ApiResult<()> {
    if caught_up && head.saturating_sub(seq) > MAX_LAG {
        return Err(ApiError::FeedClosed {
            code: "SLOW_CONSUMER",
            message: format!(
                "this feed fell more than {MAX_LAG} events behind the log; subscribe again with fromSeq: {seq}"
            ),
        });
    }
    Ok(())
}

/// A notification taken from the hub, or why the feed closes: SLOW_CONSUMER once the
/// receiver has missed some, SHUTTING_DOWN once the hub is gone.
fn taken(received: Result<Arc<Notification>, broadcast::error::RecvError>) -> ApiResult<Arc<Notification>> {
    match received {
        Ok(notification) => Ok(notification),
        Err(broadcast::error::RecvError::Lagged(missed)) => Err(ApiError::FeedClosed {
            code: "SLOW_CONSUMER",
            message: format!("this feed fell {missed} notifications behind; subscribe again"),
        }),
        Err(broadcast::error::RecvError::Closed) => Err(shutting_down()),
    }
}

struct EventFeed {
    live: Liveness,
    store: oacis_eventlog::AnyStore,
    feed: oacis_eventlog::AnySubscription,
    every: tokio::time::Interval,
    streams: Option<Vec<String>>,
    kinds: Option<Vec<String>>,
    caught_up: bool,
    open: FeedState,
}

impl Feed for EventFeed {
    type Item = EventNode;

    fn state(&mut self) -> &mut FeedState {
        &mut self.open
    }

    fn live(&self) -> &Liveness {
        &self.live
    }

    async fn next(&mut self) -> Option<ApiResult<EventNode>> {
        loop {
            let record = tokio::select! {
                record = self.feed.next() => record,
                ticked = self.live.tick(&mut self.every) => {
                    if let Err(e) = ticked.and_then(|()| self.live.caller(Some(Permission::AuditRead))) {
                        return Some(Err(e));
                    }
                    continue;
                }
            };
            let record = match record? {
                Ok(record) => record,
                Err(e) => return Some(Err(ApiError::internal(e))),
            };
            let head = self.store.head().seq;
            if let Err(e) = within_lag(self.caught_up, head.0, record.seq.0) {
                return Some(Err(e));
            }
            self.caught_up |= record.seq >= head;
            if !EventNode::selected(&record, self.streams.as_deref(), self.kinds.as_deref()) {
                continue;
            }
            let caller = match self.live.caller(Some(Permission::AuditRead)) {
                Ok(caller) => caller,
                Err(e) => return Some(Err(e)),
            };
            let personal = caller.may(Permission::CustomerReadPersonal, &Resource::global());
            return Some(Ok(EventNode::of(&record, personal, self.live.state.bus.projections(), &caller)));
        }
    }
}

struct NotificationFeed {
    live: Liveness,
    receiver: broadcast::Receiver<Arc<Notification>>,
    every: tokio::time::Interval,
    open: FeedState,
}

impl Feed for NotificationFeed {
    type Item = NotificationNode;

    fn state(&mut self) -> &mut FeedState {
        &mut self.open
    }

    fn live(&self) -> &Liveness {
        &self.live
    }

    async fn next(&mut self) -> Option<ApiResult<NotificationNode>> {
        loop {
            let received = tokio::select! {
                received = self.receiver.recv() => received,
                ticked = self.live.tick(&mut self.every) => {
                    if let Err(e) = ticked.and_then(|()| self.live.caller(None)) {
                        return Some(Err(e));
                    }
                    continue;
                }
            };
            let notification = match taken(received) {
                Ok(n) => n,
                Err(e) => return Some(Err(e)),
            };
            let caller = match self.live.caller(None) {
                Ok(caller) => caller,
                Err(e) => return Some(Err(e)),
            };
            let mine = match notification.recipient {
                Recipient::User(user) => user == caller.user,
                Recipient::AccountAndAdministrators(user) => user == caller.user || caller.holds(Permission::UserAdmin),
            };
            if mine {
                return Some(Ok(NotificationNode {
                    kind: notification.kind.as_str().into(),
                    record: notification.record.to_string(),
                    detail: notification.detail.clone(),
                    at: super::scalars::time_text(notification.at),
                    seq: notification.seq,
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::{Hub, NotificationKind, BACKLOG};

    #[test]
    fn a_caught_up_events_feed_too_far_behind_is_closed_with_where_to_resume() {
        assert!(within_lag(false, 10 * MAX_LAG, 1).is_ok(), "reading history is not lagging");
        assert!(within_lag(true, 5 + MAX_LAG, 5).is_ok());
        let closed = within_lag(true, 6 + MAX_LAG, 5).unwrap_err();
        assert_eq!(closed.code(), "SLOW_CONSUMER");
        assert!(closed.message().ends_with("fromSeq: 5"), "{}", closed.message());
    }

    #[tokio::test]
    async fn a_notification_receiver_that_lags_is_closed_not_buffered() {
        let hub = std::sync::Arc::new(Hub::default());
        let mut receiver = hub.receiver();
        let note = |n: usize| Notification {
            recipient: Recipient::User(oacis_domain::ids::UserId(uuid::Uuid::nil())),
            kind: NotificationKind::TaskAssigned,
            record: uuid::Uuid::nil(),
            detail: format!("任务{n}"),
            at: oacis_domain::ids::Timestamp(0),
            seq: None,
        };
        for n in 0..BACKLOG + 10 {
            hub.raise_for_test(note(n));
        }
        let closed = taken(receiver.recv().await).unwrap_err();
        assert_eq!(closed.code(), "SLOW_CONSUMER");
        assert!(closed.message().contains("10 notifications behind"), "{}", closed.message());
        // The hub kept only its backlog: what is left are the newest.
        assert_eq!(taken(receiver.recv().await).unwrap().detail, "任务10");
        drop(hub);
        let mut receiver = std::sync::Arc::new(Hub::default()).receiver();
        assert_eq!(taken(receiver.recv().await).unwrap_err().code(), "SHUTTING_DOWN");
    }
}
