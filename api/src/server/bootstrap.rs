//! First start, demo data and the import given with `--import`, through the same command
//! path as the API.
//!
//! On an empty store: the root department, the default roles (`authz::default_roles`, each
//! name reserved) and the administrator `admin`, granted the administrator role over
//! everything, whose password comes from `OACIS_ADMIN_PASSWORD` or is generated and printed
//! once, and must be changed at first sign-in.

use std::collections::BTreeMap;

use oacis_domain::access::{
    Grant, GrantCommand, Reservation, ReservationCommand, Role, RoleCommand, UniqueKey, UniqueKind,
};
use oacis_domain::authz::{default_roles, Scope};
use oacis_domain::department::{Department, DepartmentCommand};
use oacis_domain::ids::{DepartmentId, GrantId, RoleId, UserId};
use oacis_domain::user::{PasswordFacts, User, UserCommand, UserPersonal, UserProfile};
use oacis_eventlog::EventStore;
use oacis_projections::demo::{generate_into, load, DemoOrg, DemoSize};
use uuid::Uuid;

use super::AppState;
use crate::command::{on, CommandBus, Origin};

/// Name of the root department created at first start.
pub const ROOT_DEPARTMENT: &str = "总部";

/// Sets up what a store lacks of the first-start organisation: the root department, the
/// default roles and the administrator. A store that has them all is left alone; one whose
/// set-up was interrupted is completed.
pub async fn first_start(state: &AppState) -> anyhow::Result<()> {
    let bus = &state.bus;
    let (root, mut roles, has_admin) = bus.projections().read(|views| {
        let access = &views.access;
        let root = access.departments().find(|(_, d)| d.parent.is_none()).map(|(id, _)| *id);
        let roles: BTreeMap<String, RoleId> = access.roles().map(|(id, r)| (r.name.clone(), *id)).collect();
        (root, roles, access.user_by_name("admin").is_some())
    })?;
    // Check the administrator's password before anything is written.
    let admin_password = if has_admin {
        None
    } else {
        Some(match &state.config.admin_password {
            Some(p) => {
                let problems = crate::auth::password::policy_problems(p, "admin", ADMIN_EMPLOYEE_NO);
                if !problems.is_empty() {
                    anyhow::bail!("OACIS_ADMIN_PASSWORD is not accepted: it {}", problems.join("; it "));
                }
                (p.clone(), false)
            }
            None => (crate::auth::password::generate()?, true),
        })
    };
    let system = Origin::system();
    let root = match root {
        Some(root) => root,
        None => {
            let root = DepartmentId(Uuid::now_v7());
            let create =
                DepartmentCommand::Create { id: root, name: ROOT_DEPARTMENT.into(), parent: None, parent_open: false };
            bus.execute::<Department>(root.stream(), create, &system).await?;
            root
        }
    };
    for role in default_roles() {
        if roles.contains_key(role.name) {
            continue;
        }
        let id = RoleId(Uuid::now_v7());
        let key = UniqueKey::new(UniqueKind::RoleName, role.name);
        let steps = vec![
            on::<Role>(id.stream(), RoleCommand::Define { id, name: role.name.into(), permissions: role.permissions }),
            on::<Reservation>(key.stream(), ReservationCommand::Claim { key, owner: id.0 }),
        ];
        bus.execute_steps(steps, &system).await?;
        roles.insert(role.name.to_owned(), id);
    }
    let Some((password, generated)) = admin_password else { return Ok(()) };
    let admin = create_user(state, "admin", ADMIN_EMPLOYEE_NO, "Administrator", root, &password, &system).await?;
    bus.execute::<User>(admin.stream(), UserCommand::RequirePasswordChange, &system).await?;
    let administrator = roles.get("administrator").copied().ok_or_else(|| anyhow::anyhow!("no administrator role"))?;
    grant(bus, admin, administrator, Scope::All, &system).await?;
    if generated {
        eprintln!("oacis: created the administrator `admin` with password {password}");
        eprintln!("oacis: it is shown only this once and must be changed at first sign-in");
    } else {
        eprintln!("oacis: created the administrator `admin` with the password from OACIS_ADMIN_PASSWORD");
    }
    Ok(())
}

/// The first administrator's employee number.
pub const ADMIN_EMPLOYEE_NO: &str = "A-0001";

/// Creates a user with reserved username and employee number and a password.
pub async fn create_user(
    state: &AppState,
    username: &str,
    employee_no: &str,
    display_name: &str,
    department: DepartmentId,
    password: &str,
    origin: &Origin,
) -> anyhow::Result<UserId> {
    let id = UserId(Uuid::now_v7());
    let claim = |kind, value: &str| {
        let key = UniqueKey::new(kind, value);
        on::<Reservation>(key.stream(), ReservationCommand::Claim { key, owner: id.0 })
    };
    let profile = UserProfile {
        display_name: display_name.into(),
        department,
        position: None,
        personal: UserPersonal::default(),
    };
    // The user's own stream first: the command's answer names its version. Both names sign
    // in, so each is claimed as either kind: no later user can take one as the other.
    let mut steps = vec![on::<User>(
        id.stream(),
        UserCommand::Create { id, username: username.into(), employee_no: employee_no.into(), profile },
    )];
    // Each as its own kind first, so that a name taken as such is refused on its own field.
    let mut claimed = std::collections::HashSet::new();
    for (kind, value) in [
        (UniqueKind::Username, username),
        (UniqueKind::EmployeeNumber, employee_no),
        (UniqueKind::EmployeeNumber, username),
        (UniqueKind::Username, employee_no),
    ] {
        if claimed.insert(UniqueKey::new(kind, value).stream()) {
            steps.push(claim(kind, value));
        }
    }
    state.bus.execute_steps(steps, origin).await?;
    let credential = state.hasher.hash(password).await?;
    let facts = PasswordFacts {
        meets_policy: crate::auth::password::policy_problems(password, username, employee_no).is_empty(),
        recently_used: false,
    };
    state.bus.execute::<User>(id.stream(), UserCommand::SetPassword { credential, facts }, origin).await?;
    Ok(id)
}

async fn grant(bus: &CommandBus, user: UserId, role: RoleId, scope: Scope, origin: &Origin) -> anyhow::Result<()> {
    let id = GrantId(Uuid::now_v7());
    bus.execute::<Grant>(id.stream(), GrantCommand::Give { id, user, role, scope }, origin).await?;
    Ok(())
}

/// Fills a freshly set-up store with demo data and one user per default role, and prints
/// their sign-in names and passwords. Does nothing if customers exist already.
pub async fn demo(state: &AppState) -> anyhow::Result<()> {
    let bus = &state.bus;
    let (org, admin, has_customers) = bus.projections().read(|views| {
        let access = &views.access;
        let root = access.departments().find(|(_, d)| d.parent.is_none()).map(|(id, _)| *id);
        let roles: BTreeMap<String, RoleId> =
            access.roles().filter(|(_, r)| !r.retired).map(|(id, r)| (r.name.clone(), *id)).collect();
        let admin = access.user_by_name("admin").map(|u| u.id);
        (root.map(|root| (root, roles)), admin, !views.directory.is_empty())
    })?;
    if has_customers {
        eprintln!("oacis: the store holds customers already; no demo data added");
        return Ok(());
    }
    let (root, roles) = org.ok_or_else(|| anyhow::anyhow!("the store has no root department"))?;
    let actor = admin.ok_or_else(|| anyhow::anyhow!("the store has no administrator"))?;
    let customers = state.config.demo_customers;
    let appends = generate_into(DemoSize { customers, seed: 2026 }, &DemoOrg { root, roles: roles.clone(), actor })?;
    let events_total: u64 = appends.iter().map(|a| a.events.len() as u64).sum();
    eprintln!("oacis: loading demo data: {customers} customers, {events_total} events");
    let start = bus.store().head().seq.0;
    let store = bus.store().clone();
    // Progress follows the log's head while the loader appends.
    let ticker = tokio::spawn(async move {
        let mut progress = crate::progress::Progress::new("demo", events_total);
        let mut every = tokio::time::interval(std::time::Duration::from_millis(250));
        loop {
            every.tick().await;
            let done = store.head().seq.0.saturating_sub(start);
            progress.set(done);
            if done >= events_total {
                progress.finish();
                return;
            }
        }
    });
    let events = load(bus.store(), appends, 16).await;
    let events = match events {
        Ok(events) => {
            let _ = ticker.await;
            events
        }
        Err(e) => {
            ticker.abort();
            return Err(e.into());
        }
    };
    bus.projections().wait_for(bus.store().head().seq).await?;
    eprintln!("oacis: loaded {events} demo events");
    // One user per default role, each with a password, in the demo's regions.
    let regions: Vec<DepartmentId> = bus.projections().read(|views| {
        views.access.departments().filter(|(_, d)| d.parent == Some(root)).map(|(id, _)| *id).collect()
    })?;
    let origin = Origin { actor: Some(actor), ..Origin::system() };
    eprintln!("oacis: demo users (sign in with these; passwords are shown only now):");
    let mut users = BTreeMap::new();
    for (n, role) in default_roles().iter().enumerate() {
        let department = regions.get(n % regions.len().max(1)).copied().unwrap_or(root);
        let scope = match role.name {
            "administrator" | "analyst" | "auditor" => Scope::All,
            "manager" => Scope::DepartmentTree,
            "service" => Scope::Department,
            _ => Scope::Department,
        };
        let username = format!("demo.{}", role.name);
        let password = crate::auth::password::generate()?;
        let user =
            create_user(state, &username, &format!("D-{n:03}"), &username, department, &password, &origin).await?;
        let role_id = roles.get(role.name).copied().ok_or_else(|| anyhow::anyhow!("no role {}", role.name))?;
        grant(bus, user, role_id, scope, &origin).await?;
        eprintln!("  {username:<20} {password}  ({} over {scope:?})", role.name);
        users.insert(role.name, user);
    }
    demo_approvals(state, &users, root, &regions, &origin).await
}

/// The demo's approvals: every department led by `demo.manager`; a reimbursement definition
/// (the leader, then above ¥5,000 `demo.administrator`) and a leave definition counting annual
/// leave, each demo user credited 10 days of it this year; and one ¥3,800 reimbursement of
/// `demo.sales` waiting for the manager.
async fn demo_approvals(
    state: &AppState,
    users: &BTreeMap<&str, UserId>,
    root: DepartmentId,
    regions: &[DepartmentId],
    origin: &Origin,
) -> anyhow::Result<()> {
    use oacis_domain::approval::definition::{Definition, DefinitionBody, DefinitionCommand};
    use oacis_domain::approval::instance::{Act, ApprovalCommand, Environment};
    use oacis_domain::approval::ledger::{leave_key, Ledger, LedgerCommand, LedgerUnit};
    use oacis_domain::ids::{ApprovalDefinitionId, ApprovalId, LedgerId};

    let bus = &state.bus;
    let user = |name: &str| users.get(name).copied().ok_or_else(|| anyhow::anyhow!("no demo user {name}"));
    let manager = user("manager")?;
    for department in regions.iter().copied().chain([root]) {
        let lead = DepartmentCommand::SetLeader { leader: Some(manager), leader_active: true };
        bus.execute::<Department>(department.stream(), lead, origin).await?;
    }
    let reimbursement: DefinitionBody = serde_json::from_value(serde_json::json!({
        "name": "费用报销",
        "form": [{ "name": "amount", "label": "金额", "type": "money", "required": true },
                 { "name": "reason", "label": "事由", "type": "text", "max": 200, "required": true },
                 { "name": "invoice", "label": "发票", "type": "attachment" }],
        "nodes": [
            { "type": "approval", "id": "manager", "name": "部门经理", "approvers": { "kind": "leader", "level": 1 },
              "mode": { "kind": "any" }, "due": { "working_days": 2, "on_due": "remind" } },
            { "type": "condition", "id": "big", "name": "大于5000元", "default": [], "branches": [{
                "when": { "and": true, "groups": [{ "and": true, "rules": [{ "field": "amount", "op": "gt", "value": 500_000 }] }] },
                "nodes": [{ "type": "approval", "id": "director", "name": "总经理", "mode": { "kind": "any" },
                            "approvers": { "kind": "users", "users": [user("administrator")?] } }] }] }
        ]
    }))?;
    let leave: DefinitionBody = serde_json::from_value(serde_json::json!({
        "name": "请假",
        "form": [{ "name": "days", "label": "请假日期", "type": "date_range", "required": true },
                 { "name": "reason", "label": "事由", "type": "text", "max": 200, "required": true }],
        "nodes": [{ "type": "approval", "id": "manager", "name": "部门经理", "approvers": { "kind": "leader", "level": 1 },
                    "mode": { "kind": "any" } }],
        "ledger": { "kind": "leave", "leave_type": "annual", "range_field": "days" }
    }))?;
    let mut definitions = Vec::new();
    for body in [reimbursement, leave] {
        let id = ApprovalDefinitionId(Uuid::now_v7());
        bus.execute::<Definition>(id.stream(), DefinitionCommand::Publish { id, body }, origin).await?;
        definitions.push(id);
    }
    let year = oacis_domain::ids::Date::of_timestamp(bus.now(), oacis_domain::approval::calendar::OFFSET_MINUTES)
        .map_or(2026, oacis_domain::ids::Date::year);
    for user in users.values() {
        let key = leave_key(*user, "annual", year);
        let credit = LedgerCommand::Credit {
            key: key.clone(),
            unit: LedgerUnit::HalfDays,
            amount: 20,
            reason: "年假10天".into(),
        };
        bus.execute::<Ledger>(LedgerId::of(&key).stream(), credit, origin).await?;
    }
    let sales = user("sales")?;
    let env = bus.projections().read(|v| {
        let definition = v.approvals.definition(definitions[0], None).cloned()?;
        let form = serde_json::from_value(serde_json::json!({ "amount": 380_000, "reason": "客户拜访差旅费" })).ok()?;
        let org = crate::approvals::org_facts(v, sales, &definition.body, &form, &BTreeMap::new(), None, &[]);
        Some((Environment { definition, org, calendar: v.approvals.calendar().clone() }, form))
    })?;
    let (env, form) = env.ok_or_else(|| anyhow::anyhow!("the demo's reimbursement definition is missing"))?;
    let id = ApprovalId(Uuid::now_v7());
    let submit = ApprovalCommand { act: Act::Submit { id, form, picked: BTreeMap::new() }, env };
    crate::approvals::execute(bus, id, submit, &Origin { actor: Some(sales), ..Origin::system() }).await?;
    eprintln!("oacis: demo approvals: a reimbursement and a leave definition; demo.sales's reimbursement waits for demo.manager");
    Ok(())
}

/// Imports the file given with `--import` as `admin`, unless this store holds a finished
/// import of the same bytes (BLAKE3) that was not undone: restarting with the same flag
/// imports nothing twice. Refused rows are listed and do not stop the server.
///
/// # Errors
/// The file cannot be read or mapped, there is no administrator, or the log refuses.
pub async fn import_at_start(state: &AppState, file: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use oacis_domain::import::ImportStatus;
    let bytes = crate::cli::transfer::read_file(file).context("--import")?;
    let blake3 = blake3::hash(&bytes).to_hex().to_string();
    let bus = &state.bus;
    let (done, caller) = bus.projections().read(|views| {
        let caller = crate::access::Caller::acting_as(&views.access, "admin");
        // Only an import made as `admin` counts: another user's import of the same file
        // (perhaps with every row refused for lack of rights) does not stand in for it.
        let admin = caller.as_ref().map(|c| c.user.0.to_string());
        let done = views
            .audit
            .imports()
            .find(|i| i.file_blake3 == blake3 && i.status == ImportStatus::Finished && Some(&i.actor) == admin.as_ref())
            .map(|i| i.id);
        (done, caller)
    })?;
    if let Some(id) = done {
        eprintln!("oacis: {} was imported before (import {id}); not imported again", file.display());
        return Ok(());
    }
    let caller = caller.ok_or_else(|| anyhow::anyhow!("--import: the store has no active administrator `admin`"))?;
    let config = &state.config;
    let mut options = crate::transfer::import::ImportOptions::new(
        file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    );
    options.mapping = crate::cli::transfer::parse_mapping(&config.import_map)
        .ok_or_else(|| anyhow::anyhow!("--import-map takes HEADER=FIELD"))?;
    options.omit_invalid_values = config.import_omit_invalid_values;
    eprintln!("oacis: importing {}", file.display());
    let report = crate::cli::transfer::import_showing_progress(bus, &caller, &bytes, &options).await?;
    for line in crate::cli::transfer::summary(&report).lines() {
        eprintln!("oacis: {line}");
    }
    if report.totals.refused > 0 || report.totals.warned > 0 {
        eprintln!(
            "oacis: every row's errors and warnings: importCustomers with dryRun: true and the same file, \
             or `oacis import customers FILE --dry-run --report R.csv` on a stopped server"
        );
    }
    Ok(())
}
