//! Approvals at scale: the to-do (inbox) query with N open approval tasks, and approval
//! operations per second through the command path, each against the task board's
//! equivalent measured in the same run (N open tasks; completing tasks).
//!
//! - Inbox: N approvals (one open task each) and N tasks, spread over 1,000 approvers with
//!   a tenth of them on one busy approver; a query is the view read a to-do page makes (the
//!   list with its total, the first 20 rows), p50/p99 over 2,000 queries, for a typical and
//!   for the busy approver.
//! - Operations: approvals approved by their assignees through `oacis_api::approvals::execute`
//!   (organisation facts, decision, durable append, views applied), 64 at a time on as many
//!   approvals ("across many"), and one after another on one approval whose node has a chain
//!   of 20 approvers, 10 such approvals in turn ("on one instance"); against completing tasks 64 at a time and
//!   commenting on one task one after another.
//!
//! `cargo bench -p oacis-api --bench approvals` (sizes: `OACIS_BENCH_TASKS=10000,100000`;
//! scratch folder: `OACIS_BENCH_DIR`).

#![allow(clippy::unwrap_used, clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use oacis_api::command::{CommandBus, Origin};
use oacis_api::server::{App, ServeArgs};
use oacis_domain::approval::calendar::WorkCalendar;
use oacis_domain::approval::definition::{Approvers, Definition, DefinitionBody, DefinitionCommand, Mode, Node};
use oacis_domain::approval::form::{FieldKind, FieldSpec, FormValues};
use oacis_domain::approval::instance::{Act, Approval, ApprovalCommand, Environment, OrgFacts};
use oacis_domain::ids::{ApprovalDefinitionId, ApprovalId, TaskId, Timestamp, UserId};
use oacis_domain::task::{Priority, Task, TaskCommand, TaskStatus};
use oacis_domain::{Aggregate, Context, DomainEvent};
use oacis_eventlog::{AppendMeta, EventKind, EventStore, ExpectedVersion, NewEvent, StreamAppend, StreamId};
use oacis_projections::views::approvals::ApprovalList;
use uuid::Uuid;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Settings {
    #[command(flatten)]
    serve: ServeArgs,
}

const APPROVERS: u128 = 1_000;
const PAGE: usize = 20;
const QUERIES: usize = 2_000;
const CONCURRENT: usize = 64;
const OPERATIONS: usize = 2_000;
/// Approvers of one chain (the most a submitter may pick for a node).
const CHAIN: usize = 20;
/// Chains approved one after another.
const CHAINS: usize = 10;

fn user(n: u128) -> UserId {
    UserId(Uuid::from_u128(0x5000_0000 + n))
}

/// The approver of the `i`-th approval or task: a tenth go to approver 0.
fn approver(i: usize) -> UserId {
    if i.is_multiple_of(10) {
        user(0)
    } else {
        user(1 + (i as u128 * 7919) % (APPROVERS - 1))
    }
}

fn new_events<E: DomainEvent>(events: &[E]) -> Vec<NewEvent> {
    events
        .iter()
        .map(|e| NewEvent { kind: EventKind::new(e.kind()).unwrap(), schema: e.schema(), payload: e.payload() })
        .collect()
}

fn percentile(mut samples: Vec<f64>, p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

/// Appends streams' first events, 300 streams per `append_many` (at most 1,000 events).
async fn load(bus: &CommandBus, streams: Vec<(String, Vec<NewEvent>)>) {
    for chunk in streams.chunks(300) {
        let parts = chunk
            .iter()
            .map(|(stream, events)| StreamAppend {
                stream: StreamId::new(stream.clone()).unwrap(),
                expected: ExpectedVersion::NoStream,
                events: events.clone(),
            })
            .collect();
        bus.store().append_many(parts, AppendMeta::new(Uuid::now_v7(), "bench")).await.unwrap();
    }
    bus.projections().wait_for(bus.store().head().seq).await.unwrap();
}

fn definition(mode: Mode) -> DefinitionBody {
    DefinitionBody {
        name: "审批".into(),
        form: vec![FieldSpec { name: "amount".into(), label: "金额".into(), kind: FieldKind::Money, required: true }],
        nodes: vec![Node::Approval {
            id: "review".into(),
            name: "审核".into(),
            approvers: Approvers::Picked,
            mode,
            due: None,
            fields: BTreeMap::new(),
        }],
        ledger: None,
    }
}

async fn publish(bus: &CommandBus, id: u128, mode: Mode) -> oacis_domain::approval::definition::PublishedDefinition {
    let id = ApprovalDefinitionId(Uuid::from_u128(id));
    bus.execute::<Definition>(
        id.stream(),
        DefinitionCommand::Publish { id, body: definition(mode) },
        &Origin::system(),
    )
    .await
    .unwrap();
    bus.projections().read(|v| v.approvals.definition(id, None).cloned()).unwrap().unwrap()
}

/// The submission events of an approval picking `approvers` for its node.
fn submitted(
    definition: &oacis_domain::approval::definition::PublishedDefinition,
    id: ApprovalId,
    approvers: Vec<UserId>,
) -> Vec<NewEvent> {
    let org = OrgFacts { active: approvers.iter().copied().chain([user(9_999)]).collect(), ..OrgFacts::default() };
    let env = Environment { definition: definition.clone(), org, calendar: WorkCalendar::default() };
    let act = Act::Submit {
        id,
        form: FormValues::from([("amount".to_owned(), serde_json::json!(100))]),
        picked: BTreeMap::from([("review".to_owned(), approvers)]),
    };
    let ctx = Context::new(Some(user(9_999)), Timestamp(1_795_000_000_000_000));
    new_events(&Approval::decide(&Default::default(), ApprovalCommand { act, env }, &ctx).unwrap())
}

/// Runs `op(i)` for `i` in `0..count`, `CONCURRENT` at a time; returns operations per second.
async fn rate<F, Fut>(count: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENT)
        .map(|_| {
            let (op, next) = (op.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    op(i).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    count as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let sizes: Vec<usize> = std::env::var("OACIS_BENCH_TASKS")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let base = std::env::var_os("OACIS_BENCH_DIR").map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("| open tasks | inbox p50 / p99 µs, typical | task board p50 / p99 µs, typical | ratio p99 | inbox p50 / p99 µs, busy | task board p50 / p99 µs, busy | ratio p99 |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut operations = String::new();
    for n in sizes {
        runtime.block_on(async {
            let dir = tempfile::tempdir_in(&base).unwrap();
            let data = dir.path().join("data");
            let argv = ["oacis", "--data", data.to_str().unwrap(), "--admin-password", "Bench-Pass-2026!x"];
            let app = App::open(Settings::parse_from(argv).serve).await.unwrap();
            let bus = app.state.bus.clone();
            let any = publish(&bus, 1, Mode::Any).await;
            let approvals: Vec<(String, Vec<NewEvent>)> = (0..n)
                .map(|i| {
                    let id = ApprovalId(Uuid::from_u128(0xA000_0000 + i as u128));
                    (id.stream(), submitted(&any, id, vec![approver(i)]))
                })
                .collect();
            load(&bus, approvals).await;
            let tasks: Vec<(String, Vec<NewEvent>)> = (0..n)
                .map(|i| {
                    let id = TaskId(Uuid::from_u128(0xC000_0000 + i as u128));
                    let create = TaskCommand::Create {
                        id,
                        title: format!("任务{i}"),
                        description: None,
                        priority: Priority::Normal,
                        assignee: approver(i),
                        due: None,
                        reminder: None,
                        related: None,
                    };
                    let ctx = Context::new(Some(user(9_999)), Timestamp(1_795_000_000_000_000));
                    (id.stream(), new_events(&Task::decide(&Default::default(), create, &ctx).unwrap()))
                })
                .collect();
            load(&bus, tasks).await;

            // The inbox query against the task board's, typical and busy approver.
            let measure = |busy: bool, inbox: bool| {
                let mut samples = Vec::with_capacity(QUERIES);
                for q in 0..QUERIES {
                    let who = if busy { user(0) } else { user(1 + (q as u128 * 31) % (APPROVERS - 1)) };
                    let started = Instant::now();
                    let page = bus
                        .projections()
                        .read(|v| {
                            if inbox {
                                let rows = v.approvals.list(who, ApprovalList::Inbox, None);
                                let page: Vec<_> = rows.iter().take(PAGE).map(|r| r.state.clone()).collect();
                                (rows.len(), page.len())
                            } else {
                                let rows = v.tasks.of_assignee(who, Some(TaskStatus::Open));
                                let page: Vec<_> = rows.iter().take(PAGE).map(|r| (*r).clone()).collect();
                                (rows.len(), page.len())
                            }
                        })
                        .unwrap();
                    samples.push(started.elapsed().as_secs_f64() * 1e6);
                    assert!(page.0 > 0 && page.1 > 0);
                }
                (percentile(samples.clone(), 0.5), percentile(samples, 0.99))
            };
            let (inbox, board) = (measure(false, true), measure(false, false));
            let (inbox_busy, board_busy) = (measure(true, true), measure(true, false));
            println!(
                "| {n} | {:.0} / {:.0} | {:.0} / {:.0} | {:.2}x | {:.0} / {:.0} | {:.0} / {:.0} | {:.2}x |",
                inbox.0,
                inbox.1,
                board.0,
                board.1,
                inbox.1 / board.1,
                inbox_busy.0,
                inbox_busy.1,
                board_busy.0,
                board_busy.1,
                inbox_busy.1 / board_busy.1
            );

            // Operations across many approvals, against completing tasks.
            let count = OPERATIONS.min(n);
            let approve = {
                let bus = bus.clone();
                move |i: usize| {
                    let bus = bus.clone();
                    async move {
                        let id = ApprovalId(Uuid::from_u128(0xA000_0000 + i as u128 * (n / count) as u128));
                        let who = approver(i * (n / count));
                        let env = bus.projections().read(|v| oacis_api::approvals::environment(v, id, None, &[])).unwrap().unwrap();
                        let act = Act::Approve { task: 1, comment: None, edits: FormValues::new() };
                        let origin = Origin { actor: Some(who), ..Origin::system() };
                        oacis_api::approvals::execute(&bus, id, ApprovalCommand { act, env }, &origin).await.unwrap();
                    }
                }
            };
            let approvals_per_second = rate(count, approve).await;
            let complete = {
                let bus = bus.clone();
                move |i: usize| {
                    let bus = bus.clone();
                    async move {
                        let id = TaskId(Uuid::from_u128(0xC000_0000 + i as u128 * (n / count) as u128));
                        let origin = Origin { actor: Some(approver(i * (n / count))), ..Origin::system() };
                        bus.execute::<Task>(id.stream(), TaskCommand::Complete, &origin).await.unwrap();
                    }
                }
            };
            let tasks_per_second = rate(count, complete).await;

            // One after another on one approval (a chain of approvers), against comments on one task.
            let chain_definition = publish(&bus, 2, Mode::Sequential).await;
            let chained: Vec<UserId> = (0..CHAIN).map(|i| user(20_000 + i as u128)).collect();
            let chains: Vec<ApprovalId> = (0..CHAINS).map(|c| ApprovalId(Uuid::from_u128(0xD000_0000 + c as u128))).collect();
            let loads = chains.iter().map(|c| (c.stream(), submitted(&chain_definition, *c, chained.clone()))).collect();
            load(&bus, loads).await;
            let started = Instant::now();
            for chain in &chains {
                for (i, who) in chained.iter().enumerate() {
                    let env =
                        bus.projections().read(|v| oacis_api::approvals::environment(v, *chain, None, &[])).unwrap().unwrap();
                    let act = Act::Approve { task: i as u32 + 1, comment: None, edits: FormValues::new() };
                    let origin = Origin { actor: Some(*who), ..Origin::system() };
                    oacis_api::approvals::execute(&bus, *chain, ApprovalCommand { act, env }, &origin).await.unwrap();
                }
            }
            let chain_per_second = (CHAIN * CHAINS) as f64 / started.elapsed().as_secs_f64();
            let task = TaskId(Uuid::from_u128(0xC000_0001));
            let started = Instant::now();
            for i in 0..CHAIN * CHAINS {
                let command = TaskCommand::Comment { id: oacis_domain::ids::EntryId(Uuid::from_u128(0xE000_0000 + i as u128)), text: "进度".into() };
                bus.execute::<Task>(task.stream(), command, &Origin { actor: Some(approver(1)), ..Origin::system() }).await.unwrap();
            }
            let comments_per_second = (CHAIN * CHAINS) as f64 / started.elapsed().as_secs_f64();
            let _ = std::fmt::Write::write_fmt(
                &mut operations,
                format_args!(
                    "| {n} | {approvals_per_second:.0} | {tasks_per_second:.0} | {:.2}x | {chain_per_second:.0} | {comments_per_second:.0} | {:.2}x |\n",
                    approvals_per_second / tasks_per_second,
                    chain_per_second / comments_per_second
                ),
            );
            app.state.live.stop();
        });
    }
    println!();
    println!("| open tasks | approvals approved/s, 64 at a time | tasks completed/s, 64 at a time | ratio | approvals of one chain/s | comments on one task/s | ratio |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    print!("{operations}");
}
