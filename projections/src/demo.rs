//! A realistic, seeded demo-data generator: departments, users, roles and grants, customers
//! with Chinese and Latin names, their interactions, purchases, service cases and tasks.
//! Every event comes out of the domain's own `decide`, so demo data obeys every rule real
//! data does. The same seed gives the same commands, ids and payloads.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use oacis_domain::access::{
    Grant, GrantCommand, Reservation, ReservationCommand, Role, RoleCommand, UniqueKey, UniqueKind,
};
use oacis_domain::authz::{default_roles, Scope};
use oacis_domain::case::{CaseCommand, ServiceCase};
use oacis_domain::customer::{
    Company, Customer, CustomerCommand, CustomerKind, CustomerPersonal, CustomerStatus, Direction, InteractionChannel,
    Profile, SourceChannel,
};
use oacis_domain::department::{Department, DepartmentCommand};
use oacis_domain::ids::{CaseId, CustomerId, Date, DepartmentId, EntryId, GrantId, RoleId, TaskId, Timestamp, UserId};
use oacis_domain::task::{Priority, Related, Task, TaskCommand};
use oacis_domain::user::{User, UserCommand, UserPersonal, UserProfile};
use oacis_domain::{Aggregate, Context, DomainEvent};
use oacis_eventlog::{AppendMeta, EventKind, EventStore, ExpectedVersion, NewEvent, StreamId, Version};
use uuid::Uuid;

use crate::error::ProjectionError;

const SURNAMES: &[&str] = &["王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "欧阳", "司马"];
const GIVEN: &[&str] = &["伟", "芳", "娜", "敏", "静", "磊", "洋", "艳", "勇", "军", "晓明", "思远"];
const LATIN_FIRST: &[&str] = &["Anna", "Ben", "Chloé", "David", "Elena", "Farid", "Grace", "Hiro", "Ingrid", "José"];
const LATIN_LAST: &[&str] = &["Müller", "Smith", "García", "Rossi", "Dubois", "Nakamura", "Kowalski", "O'Brien"];
const COMPANY_WORDS: &[&str] = &["华信", "东方", "新世纪", "海航", "Acme", "Northwind", "Globex", "Initech"];
const COMPANY_KINDS: &[&str] = &["科技有限公司", "贸易有限公司", "Ltd.", "GmbH", "集团"];
const TAGS: &[&str] = &["vip", "潜在客户", "续约", "renewal", "government", "教育", "manufacturing"];
/// Segments of organisations and of people (as many of each, so that a pick draws alike).
const ORGANISATION_SEGMENTS: &[&str] = &["key-account", "smb", "enterprise", "smb"];
const PERSON_SEGMENTS: &[&str] = &["key-account", "vip", "个人", "个人"];
const INDUSTRIES: &[&str] = &["软件", "制造", "教育", "retail", "finance", "医疗"];
const PRODUCTS: &[&str] = &["年度服务包", "CRM Pro 许可", "培训课程", "Hardware kit", "实施服务"];
const SOURCES: &[SourceChannel] = &[
    SourceChannel::SalesVisit,
    SourceChannel::Referral,
    SourceChannel::MarketResearch,
    SourceChannel::Website,
    SourceChannel::SocialMedia,
    SourceChannel::Event,
    SourceChannel::Other,
];

/// A small deterministic generator (xorshift64*), so the demo needs no randomness source.
/// Also used by the benchmarks. The seed must not be zero.
#[derive(Debug, Clone)]
pub struct Dice(pub u64);

impl Dice {
    /// The next 64 random bits.
    pub fn roll(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.roll() % (n.max(1) as u64)).unwrap_or(0)
    }

    /// One of `items` (which must not be empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.roll() % 100 < percent
    }
}

/// One append of the demo: a stream, the version it expects, events and who acted.
#[derive(Debug, Clone)]
pub struct DemoAppend {
    /// Stream name.
    pub stream: String,
    /// The stream's version before this append.
    pub expected: u64,
    /// (kind, schema, payload).
    pub events: Vec<(&'static str, u32, Vec<u8>)>,
    /// Acting user.
    pub actor: String,
    /// Idempotency key.
    pub command: Uuid,
}

/// An organisation that already exists in the store (the root department and the default
/// roles a server creates at first start), for demo data added to it.
#[derive(Debug, Clone)]
pub struct DemoOrg {
    /// The root department; the demo's regions go under it.
    pub root: DepartmentId,
    /// The default roles by name.
    pub roles: BTreeMap<String, RoleId>,
    /// Who registers the organisation's departments and users.
    pub actor: UserId,
}

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct DemoSize {
    /// Customers.
    pub customers: usize,
    /// Seed; the same seed gives the same data.
    pub seed: u64,
}

struct Generator {
    dice: Dice,
    next_id: u128,
    seed: u64,
    minute: i64,
    versions: BTreeMap<String, u64>,
    out: Vec<DemoAppend>,
    actor: UserId,
}

const START: Timestamp = Timestamp(1_767_225_600_000_000); // 2026-01-01T00:00:00Z

impl Generator {
    fn id(&mut self) -> Uuid {
        self.next_id += 1;
        Uuid::from_u128((u128::from(self.seed) << 64) | self.next_id)
    }

    fn ctx(&mut self) -> Context {
        self.minute += 1 + i64::try_from(self.dice.below(30)).unwrap_or(0);
        Context::new(Some(self.actor), START.plus_minutes(self.minute))
    }

    /// Decides `commands` in order against `state`, recording each command's events as one
    /// append. A refused command is a bug in the generator.
    fn run<A: Aggregate>(&mut self, stream: String, commands: Vec<A::Command>) -> Result<A::State, ProjectionError> {
        self.run_from::<A>(stream, A::State::default(), commands)
    }

    /// As [`Generator::run`], continuing from `state`.
    fn run_from<A: Aggregate>(
        &mut self,
        stream: String,
        mut state: A::State,
        commands: Vec<A::Command>,
    ) -> Result<A::State, ProjectionError> {
        for command in commands {
            let ctx = self.ctx();
            let events = A::decide(&state, command, &ctx)
                .map_err(|e| ProjectionError::Demo(format!("the domain refused a command on {stream}: {e}")))?;
            if events.is_empty() {
                continue;
            }
            for event in &events {
                state = A::evolve(state, event);
            }
            let version = self.versions.entry(stream.clone()).or_insert(0);
            let expected = *version;
            *version += events.len() as u64;
            let command = self.id();
            self.out.push(DemoAppend {
                stream: stream.clone(),
                expected,
                events: events.iter().map(|e| (e.kind(), e.schema(), e.payload())).collect(),
                actor: self.actor.to_string(),
                command,
            });
        }
        Ok(state)
    }

    fn person_name(&mut self) -> String {
        if self.dice.chance(70) {
            format!("{}{}", self.dice.pick(SURNAMES), self.dice.pick(GIVEN))
        } else {
            format!("{} {}", self.dice.pick(LATIN_FIRST), self.dice.pick(LATIN_LAST))
        }
    }

    fn phone(&mut self) -> String {
        format!("+86 13{} {:04} {:04}", self.dice.below(10), self.dice.below(10_000), self.dice.below(10_000))
    }
}

fn generator(size: DemoSize, actor: UserId) -> Generator {
    Generator {
        dice: Dice(size.seed | 1),
        next_id: 0,
        seed: size.seed,
        minute: 0,
        versions: BTreeMap::new(),
        out: Vec::new(),
        actor,
    }
}

/// Generates the demo's appends, in an order that respects every stream's versions: a root
/// department, the default roles, then what [`generate_into`] adds.
pub fn generate(size: DemoSize) -> Result<Vec<DemoAppend>, ProjectionError> {
    let mut g = generator(size, UserId(Uuid::nil()));
    let root = DepartmentId(g.id());
    g.run::<Department>(
        root.stream(),
        vec![DepartmentCommand::Create { id: root, name: "总部".into(), parent: None, parent_open: false }],
    )?;
    let mut roles = BTreeMap::new();
    for role in default_roles() {
        let id = RoleId(g.id());
        g.run::<Role>(
            id.stream(),
            vec![RoleCommand::Define { id, name: role.name.into(), permissions: role.permissions }],
        )?;
        roles.insert(role.name.to_owned(), id);
    }
    fill(&mut g, size, root, &roles)?;
    Ok(g.out)
}

/// Generates demo data for an organisation that exists already: four regions under its root,
/// users (with their usernames and employee numbers reserved) and grants of its roles, and
/// customers with their activity. The seed also picks the ids, so two different seeds never
/// collide with each other or with ids of the organisation.
pub fn generate_into(size: DemoSize, org: &DemoOrg) -> Result<Vec<DemoAppend>, ProjectionError> {
    let mut g = generator(size, org.actor);
    fill(&mut g, size, org.root, &org.roles)?;
    Ok(g.out)
}

fn fill(
    g: &mut Generator,
    size: DemoSize,
    root: DepartmentId,
    roles: &BTreeMap<String, RoleId>,
) -> Result<(), ProjectionError> {
    let mut departments = vec![root];
    for name in ["华北区", "华东区", "华南区", "West Coast"] {
        let id = DepartmentId(g.id());
        g.run::<Department>(
            id.stream(),
            vec![DepartmentCommand::Create { id, name: name.into(), parent: Some(root), parent_open: true }],
        )?;
        departments.push(id);
    }
    // Users, each with a grant.
    let user_count = (size.customers / 50).clamp(5, 2_000);
    let mut users = Vec::new();
    for n in 0..user_count {
        let id = UserId(g.id());
        let department = departments[1 + n % (departments.len() - 1)];
        let display_name = g.person_name();
        let phone = g.phone();
        let username = format!("user{n:04}");
        let employee_no = format!("E-{n:05}");
        for (kind, value) in [(UniqueKind::Username, &username), (UniqueKind::EmployeeNumber, &employee_no)] {
            let key = UniqueKey::new(kind, value);
            g.run::<Reservation>(key.stream(), vec![ReservationCommand::Claim { key, owner: id.0 }])?;
        }
        g.run::<User>(
            id.stream(),
            vec![UserCommand::Create {
                id,
                username,
                employee_no,
                profile: UserProfile {
                    display_name,
                    department,
                    position: Some("销售".into()),
                    personal: UserPersonal { phone: Some(phone), email: Some(format!("user{n:04}@example.com")) },
                },
            }],
        )?;
        let (role, scope) = match n % 5 {
            0 => ("manager", Scope::DepartmentTree),
            1 => ("service", Scope::Department),
            _ => ("sales", Scope::Own),
        };
        let grant = GrantId(g.id());
        let role = *roles
            .get(role)
            .ok_or_else(|| ProjectionError::Demo(format!("the organisation has no role named {role}")))?;
        g.run::<Grant>(grant.stream(), vec![GrantCommand::Give { id: grant, user: id, role, scope }])?;
        users.push((id, department));
    }
    // Customers and their activity.
    let mut live: Vec<CustomerId> = Vec::new();
    let mut live_states: BTreeMap<CustomerId, oacis_domain::customer::CustomerState> = BTreeMap::new();
    for n in 0..size.customers {
        let id = CustomerId(g.id());
        let (owner, department) = *g.dice.pick(&users);
        g.actor = owner;
        let organisation = g.dice.chance(30);
        let name = if organisation {
            let (word, kind) = (g.dice.pick(COMPANY_WORDS), g.dice.pick(COMPANY_KINDS));
            // Latin words take a space between them; Chinese ones do not.
            let gap = if word.is_ascii() && kind.is_ascii() { " " } else { "" };
            format!("{word}{gap}{kind}")
        } else {
            g.person_name()
        };
        let tags = (0..g.dice.below(3)).map(|_| (*g.dice.pick(TAGS)).to_owned()).collect();
        let phone = g.phone();
        let profile = Profile {
            kind: if organisation { CustomerKind::Organisation } else { CustomerKind::Person },
            name,
            company: organisation
                .then(|| Company { industry: Some((*g.dice.pick(INDUSTRIES)).into()), ..Company::default() }),
            source: *g.dice.pick(SOURCES),
            tags,
            segment: Some((*g.dice.pick(if organisation { ORGANISATION_SEGMENTS } else { PERSON_SEGMENTS })).into()),
            personal: CustomerPersonal {
                phones: vec![phone],
                emails: vec![format!("c{n}@example.com")],
                ..CustomerPersonal::default()
            },
        };
        let mut commands = vec![CustomerCommand::Register { id, profile, owner, department }];
        for _ in 0..g.dice.below(4) {
            let occurred_at = START.plus_minutes(g.minute);
            commands.push(CustomerCommand::LogInteraction {
                id: EntryId(g.id()),
                channel: InteractionChannel::Call,
                direction: if g.dice.chance(50) { Direction::Inbound } else { Direction::Outbound },
                summary: "电话沟通需求 / call about requirements".into(),
                occurred_at,
                participants: vec![owner],
            });
        }
        for _ in 0..g.dice.below(3) {
            let purchase = EntryId(g.id());
            let amount = i64::try_from(g.dice.below(500_000)).unwrap_or(0) + 100;
            let month = 1 + u8::try_from(g.dice.below(12)).unwrap_or(0);
            let Some(first) = Date::new(2026, month, 1) else { continue };
            // Not after the day the generator's clock has reached (a purchase in the future
            // is refused).
            let purchased_on =
                Date::of_timestamp(START.plus_minutes(g.minute), 0).map_or(first, |today| first.min(today));
            commands.push(CustomerCommand::RecordPurchase {
                id: purchase,
                product: (*g.dice.pick(PRODUCTS)).into(),
                quantity: 1,
                amount_minor: amount,
                currency: "CNY".into(),
                purchased_on,
            });
            if g.dice.chance(5) {
                commands.push(CustomerCommand::ReversePurchase { id: purchase, reason: "退货".into() });
            }
        }
        if g.dice.chance(2) {
            commands.push(CustomerCommand::Archive { reason: "不再合作".into() });
        }
        let merge_into = (g.dice.chance(1) && !live.is_empty()).then(|| *g.dice.pick(&live));
        if let Some(survivor) = merge_into {
            commands.push(CustomerCommand::MergeInto { survivor, survivor_status: CustomerStatus::Active });
        }
        let mut state = g.run::<Customer>(id.stream(), commands)?;
        if let Some(survivor) = merge_into {
            let before = live_states.remove(&survivor).unwrap_or_default();
            let mut after =
                g.run_from::<Customer>(survivor.stream(), before, vec![CustomerCommand::Absorb { duplicate: id }])?;
            // A third of the merges turn out wrong and are undone.
            if g.dice.chance(33) {
                state = g.run_from::<Customer>(id.stream(), state, vec![CustomerCommand::Unmerge])?;
                after =
                    g.run_from::<Customer>(survivor.stream(), after, vec![CustomerCommand::Release { duplicate: id }])?;
            }
            live_states.insert(survivor, after);
        }
        if state.status == CustomerStatus::Active {
            live.push(id);
            live_states.insert(id, state);
        }
        if g.dice.chance(10) {
            let case = CaseId(g.id());
            let mut commands = vec![
                CaseCommand::Open {
                    id: case,
                    customer: id,
                    subject: "无法登录系统".into(),
                    description: "客户反馈登录失败 / login fails".into(),
                    channel: InteractionChannel::Email,
                    priority: Priority::Normal,
                },
                CaseCommand::Assign { assignee: owner },
                CaseCommand::Respond { message: "正在处理".into() },
            ];
            if g.dice.chance(70) {
                commands.push(CaseCommand::Resolve { resolution: "重置密码".into() });
                commands
                    .push(CaseCommand::Rate { score: 1 + u8::try_from(g.dice.below(5)).unwrap_or(0), comment: None });
                commands.push(CaseCommand::Close);
            }
            g.run::<ServiceCase>(case.stream(), commands)?;
        }
        if g.dice.chance(20) {
            let task = TaskId(g.id());
            let due = START.plus_minutes(g.minute + 600);
            let mut commands = vec![TaskCommand::Create {
                id: task,
                title: "回访客户 / follow up".into(),
                description: None,
                priority: *g.dice.pick(&[Priority::Low, Priority::Normal, Priority::High, Priority::Urgent]),
                assignee: owner,
                due: Some(due),
                reminder: Some(START.plus_minutes(g.minute + 300)),
                related: Some(Related::Customer(id)),
            }];
            if g.dice.chance(50) {
                commands.push(TaskCommand::Complete);
            }
            g.run::<Task>(task.stream(), commands)?;
        }
    }
    Ok(())
}

/// Appends the demo to `store`: streams run concurrently (up to `parallel` at once), each
/// stream's appends in order with exact expected versions. Returns the number of events.
pub async fn load<S: EventStore>(store: &S, appends: Vec<DemoAppend>, parallel: usize) -> Result<u64, ProjectionError> {
    let mut by_stream: BTreeMap<String, Vec<DemoAppend>> = BTreeMap::new();
    let mut order = Vec::new();
    for append in appends {
        if !by_stream.contains_key(&append.stream) {
            order.push(append.stream.clone());
        }
        by_stream.entry(append.stream.clone()).or_default().push(append);
    }
    let queue: VecDeque<Vec<DemoAppend>> = order.into_iter().filter_map(|s| by_stream.remove(&s)).collect();
    let queue = Arc::new(Mutex::new(queue));
    let mut workers = Vec::new();
    for _ in 0..parallel.max(1) {
        let (store, queue) = (store.clone(), queue.clone());
        workers.push(tokio::spawn(async move {
            let mut events = 0u64;
            loop {
                let next = queue.lock().map(|mut q| q.pop_front()).unwrap_or(None);
                let Some(stream_appends) = next else { return Ok::<u64, ProjectionError>(events) };
                for append in stream_appends {
                    let stream = StreamId::new(append.stream.clone()).map_err(|e| demo_error(&e))?;
                    let batch = append
                        .events
                        .into_iter()
                        .map(|(kind, schema, payload)| Ok(NewEvent { kind: EventKind::new(kind)?, schema, payload }))
                        .collect::<Result<Vec<_>, oacis_eventlog::AppendError>>()
                        .map_err(|e| demo_error(&e))?;
                    events += batch.len() as u64;
                    let expected = match append.expected {
                        0 => ExpectedVersion::NoStream,
                        v => ExpectedVersion::Exact(Version(v)),
                    };
                    let meta = AppendMeta::new(append.command, append.actor);
                    store.append(stream, expected, batch, meta).await.map_err(|e| demo_error(&e))?;
                }
            }
        }));
    }
    let mut total = 0;
    for worker in workers {
        total += worker.await.map_err(|e| demo_error(&e))??;
    }
    Ok(total)
}

fn demo_error(e: &dyn std::fmt::Display) -> ProjectionError {
    ProjectionError::Demo(e.to_string())
}
