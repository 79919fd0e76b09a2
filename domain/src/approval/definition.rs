//! Approval process definitions: a tree of nodes over a typed form, published in immutable
//! versions.
//!
//! Shape: a definition is a sequence of nodes between an implicit start (the submitter) and
//! an implicit end. A node is an approval (who approves, how several approvers decide), a CC
//! (who is informed), or a condition (branches tried in order, each a sequence of its own,
//! and a default); after a branch the sequence continues with the node after the condition.
//!
//! Invariants:
//! - A published version never changes; publishing again appends version `n + 1`. Each
//!   version carries the BLAKE3 hash of its body's JSON bytes, and an instance names the
//!   version and hash it started with (see [`super::instance`]).
//! - Node ids are unique within a definition, conditions only name form fields with fitting
//!   operators, and every referenced form field exists with the right type: a published
//!   definition can always route any form that passed its validation.
//! - An approval node says per form field whether its approvers read it (the default), may
//!   change it when approving (write), or do not see it (hidden).
//! - Because conditions read only the form, the route (the approval and CC nodes an instance
//!   passes, in order) is fixed by the form: [`DefinitionBody::route`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::calendar::DueRule;
use super::form::{check_condition, Condition, FieldKind, FieldSpec, FormValues};
use super::ledger::LedgerBinding;
use crate::aggregate::Aggregate;
use crate::context::Context;
use crate::error::{DomainError, FieldCode};
use crate::events;
use crate::ids::{ApprovalDefinitionId, DepartmentId, RoleId, UserId};
use crate::validate::Validator;

/// Who approves (or is copied on) a node; resolved when an instance enters the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Approvers {
    /// These users.
    Users {
        /// The users.
        users: Vec<UserId>,
    },
    /// Every member of a role.
    Role {
        /// The role.
        role: RoleId,
    },
    /// The leader of the submitter's department (`level` 1) or of the department `level - 1`
    /// above it.
    Leader {
        /// 1 = the submitter's own department.
        level: u8,
    },
    /// The leaders of the submitter's department and the `levels - 1` above it, one after
    /// another.
    LeaderChain {
        /// How many levels.
        levels: u8,
    },
    /// The head (leader) of a named department, e.g. finance's.
    DepartmentHead {
        /// The department.
        department: DepartmentId,
    },
    /// Whom the submitter picks for this node when submitting.
    Picked,
    /// The user named in a user field of the form.
    FormField {
        /// The field.
        field: String,
    },
}

/// What an approval node's approvers may do with a form field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldAccess {
    /// See it (the default).
    Read,
    /// See and change it when approving.
    Write,
    /// Not see it.
    Hidden,
}

/// How several approvers of one node decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mode {
    /// 会签: the node passes once this share of its approvers (in percent, 100 = everyone)
    /// approved; it fails once that share can no longer be reached.
    All {
        /// Percent of approvers needed, 1-100.
        pass_percent: u8,
    },
    /// 或签: the first approval or rejection decides; the other tasks are cancelled.
    Any,
    /// 依次: one after another, in the resolved order.
    Sequential,
}

/// A node of a definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Node {
    /// People approve.
    Approval {
        /// Unique within the definition.
        id: String,
        /// Shown name, e.g. `部门经理审批`.
        name: String,
        /// Who.
        approvers: Approvers,
        /// How several decide.
        mode: Mode,
        /// When its tasks fall due, and what then happens.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        due: Option<DueRule>,
        /// What its approvers may do with each form field; a field not listed is read-only.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        fields: BTreeMap<String, FieldAccess>,
    },
    /// People are informed (抄送); nobody acts.
    Cc {
        /// Unique within the definition.
        id: String,
        /// Shown name.
        name: String,
        /// Who.
        to: Approvers,
    },
    /// The first branch whose condition holds, else the default.
    Condition {
        /// Unique within the definition.
        id: String,
        /// Shown name.
        name: String,
        /// Branches, tried in order.
        branches: Vec<Branch>,
        /// The nodes taken when no branch holds (may be empty).
        default: Vec<Node>,
    },
}

impl Node {
    /// The node's id.
    #[must_use]
    pub fn id(&self) -> &str {
        match self {
            Node::Approval { id, .. } | Node::Cc { id, .. } | Node::Condition { id, .. } => id,
        }
    }
}

/// One branch of a condition node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branch {
    /// When it is taken.
    pub when: Condition,
    /// Its nodes.
    pub nodes: Vec<Node>,
}

/// What a definition version holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefinitionBody {
    /// Shown name, e.g. `费用报销`.
    pub name: String,
    /// The form's fields.
    pub form: Vec<FieldSpec>,
    /// The nodes between start and end.
    pub nodes: Vec<Node>,
    /// The leave balance or budget its approvals reserve, take and release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<LedgerBinding>,
}

/// Longest definition or node name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Most nodes in one definition (all branches counted).
pub const MAX_NODES: usize = 200;
/// Most fields of a form (or of a detail row).
pub const MAX_FIELDS: usize = 100;
/// Most options of a choice field.
pub const MAX_OPTIONS: usize = 200;

impl DefinitionBody {
    /// The BLAKE3 hash of the body's JSON bytes, as 64 hex digits.
    #[must_use]
    pub fn hash(&self) -> String {
        blake3::hash(&serde_json::to_vec(self).unwrap_or_default()).to_hex().to_string()
    }

    /// The approval and CC nodes an instance with `values` passes, in order.
    #[must_use]
    pub fn route(&self, values: &FormValues) -> Vec<&Node> {
        fn walk<'a>(nodes: &'a [Node], values: &FormValues, out: &mut Vec<&'a Node>) {
            for node in nodes {
                match node {
                    Node::Condition { branches, default, .. } => {
                        let taken =
                            branches.iter().find(|b| b.when.holds(values)).map_or(default.as_slice(), |b| &b.nodes);
                        walk(taken, values, out);
                    }
                    other => out.push(other),
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.nodes, values, &mut out);
        out
    }

    /// Every approval and CC node's approvers, at any depth, with the node's path
    /// (`nodes[1].branches[0].nodes[0]`) and the key holding them (`approvers` or `to`).
    #[must_use]
    pub fn approvers(&self) -> Vec<(String, &'static str, &Approvers)> {
        fn walk<'a>(prefix: &str, nodes: &'a [Node], out: &mut Vec<(String, &'static str, &'a Approvers)>) {
            for (i, node) in nodes.iter().enumerate() {
                let path = format!("{prefix}[{i}]");
                match node {
                    Node::Approval { approvers, .. } => out.push((path, "approvers", approvers)),
                    Node::Cc { to, .. } => out.push((path, "to", to)),
                    Node::Condition { branches, default, .. } => {
                        for (b, branch) in branches.iter().enumerate() {
                            walk(&format!("{path}.branches[{b}].nodes"), &branch.nodes, out);
                        }
                        walk(&format!("{path}.default"), default, out);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk("nodes", &self.nodes, &mut out);
        out
    }

    /// What approvers at node `id` may do with `field` (read-only where the node says nothing).
    #[must_use]
    pub fn access(&self, id: &str, field: &str) -> FieldAccess {
        match self.node(id) {
            Some(Node::Approval { fields, .. }) => fields.get(field).copied().unwrap_or(FieldAccess::Read),
            _ => FieldAccess::Read,
        }
    }

    /// The node with `id`, at any depth.
    #[must_use]
    pub fn node(&self, id: &str) -> Option<&Node> {
        fn find<'a>(nodes: &'a [Node], id: &str) -> Option<&'a Node> {
            nodes.iter().find_map(|node| {
                if node.id() == id {
                    return Some(node);
                }
                match node {
                    Node::Condition { branches, default, .. } => {
                        branches.iter().find_map(|b| find(&b.nodes, id)).or_else(|| find(default, id))
                    }
                    _ => None,
                }
            })
        }
        find(&self.nodes, id)
    }

    /// Checks everything [the module's invariants](self) promise, recording each problem.
    fn check(&self, v: &mut Validator) {
        v.text("name", &self.name, MAX_NAME_CHARS);
        let names: Vec<&str> = self.form.iter().map(|f| f.name.as_str()).collect();
        // Counted before anything is compared pairwise.
        v.at_most("form", &names, MAX_FIELDS);
        if names.len() <= MAX_FIELDS {
            v.distinct("form", &names);
        }
        for (i, field) in self.form.iter().enumerate() {
            v.code(&format!("form[{i}].name"), &field.name, 40, &['_']);
            v.text(&format!("form[{i}].label"), &field.label, MAX_NAME_CHARS);
            match &field.kind {
                FieldKind::Text { max } => {
                    v.require((1..=10_000).contains(max), format!("form[{i}].max"), FieldCode::OutOfRange, "1-10000")
                }
                FieldKind::Choice { options } => {
                    v.require(
                        !options.is_empty(),
                        format!("form[{i}].options"),
                        FieldCode::Required,
                        "list the options",
                    );
                    v.at_most(&format!("form[{i}].options"), options, MAX_OPTIONS);
                    if options.len() <= MAX_OPTIONS {
                        v.distinct(&format!("form[{i}].options"), options);
                    }
                }
                FieldKind::Rows { fields, max } => {
                    v.require((1..=500).contains(max), format!("form[{i}].max"), FieldCode::OutOfRange, "1-500");
                    v.require(
                        !fields.is_empty(),
                        format!("form[{i}].fields"),
                        FieldCode::Required,
                        "a row needs fields",
                    );
                    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
                    v.at_most(&format!("form[{i}].fields"), &names, MAX_FIELDS);
                    if names.len() <= MAX_FIELDS {
                        v.distinct(&format!("form[{i}].fields"), &names);
                    }
                    for (j, inner) in fields.iter().enumerate() {
                        v.code(&format!("form[{i}].fields[{j}].name"), &inner.name, 40, &['_']);
                        v.require(
                            !matches!(inner.kind, FieldKind::Rows { .. }),
                            format!("form[{i}].fields[{j}]"),
                            FieldCode::InvalidFormat,
                            "rows inside rows are not supported",
                        );
                    }
                }
                _ => {}
            }
        }
        match &self.ledger {
            Some(LedgerBinding::Leave { leave_type, range_field, .. }) => {
                v.code("ledger.leave_type", leave_type, 40, &['_', '-']);
                let fits =
                    self.form.iter().any(|f| &f.name == range_field && f.kind == FieldKind::DateRange && f.required);
                v.require(
                    fits,
                    "ledger.range_field",
                    FieldCode::InvalidFormat,
                    "name a required date-range field of the form",
                );
            }
            Some(LedgerBinding::Budget { category, amount_field, .. }) => {
                v.code("ledger.category", category, 40, &['_', '-']);
                let fits =
                    self.form.iter().any(|f| &f.name == amount_field && f.kind == FieldKind::Money && f.required);
                v.require(
                    fits,
                    "ledger.amount_field",
                    FieldCode::InvalidFormat,
                    "name a required money field of the form",
                );
            }
            None => {}
        }
        let mut ids: Vec<(&str, String)> = Vec::new();
        self.check_nodes(v, "nodes", &self.nodes, &mut ids);
        for (i, (id, path)) in ids.iter().enumerate() {
            if ids[..i].iter().any(|(earlier, _)| earlier == id) {
                v.fail(format!("{path}.id"), FieldCode::Duplicate, "is the id of another node");
            }
        }
        v.require(ids.len() <= MAX_NODES, "nodes", FieldCode::OutOfRange, format!("at most {MAX_NODES} nodes"));
        v.require(!self.nodes.is_empty(), "nodes", FieldCode::Required, "a definition needs at least one node");
    }

    fn check_nodes<'a>(&'a self, v: &mut Validator, path: &str, nodes: &'a [Node], ids: &mut Vec<(&'a str, String)>) {
        for (i, node) in nodes.iter().enumerate() {
            let path = format!("{path}[{i}]");
            ids.push((node.id(), path.clone()));
            v.code(&format!("{path}.id"), node.id(), 40, &['_', '-']);
            match node {
                Node::Approval { name, approvers, mode, due, fields, .. } => {
                    v.text(&format!("{path}.name"), name, MAX_NAME_CHARS);
                    for field in fields.keys() {
                        v.require(
                            self.form.iter().any(|f| &f.name == field),
                            format!("{path}.fields.{field}"),
                            FieldCode::InvalidFormat,
                            "no such field in this form",
                        );
                    }
                    if let Some(due) = due {
                        due.check(v, &format!("{path}.due"), self.form.iter().any(|f| f.kind == FieldKind::Money));
                    }
                    self.check_approvers(v, &format!("{path}.approvers"), approvers);
                    if let Mode::All { pass_percent } = mode {
                        v.require(
                            (1..=100).contains(pass_percent),
                            format!("{path}.mode.pass_percent"),
                            FieldCode::OutOfRange,
                            "1-100",
                        );
                    }
                }
                Node::Cc { name, to, .. } => {
                    v.text(&format!("{path}.name"), name, MAX_NAME_CHARS);
                    self.check_approvers(v, &format!("{path}.to"), to);
                }
                Node::Condition { name, branches, default, .. } => {
                    v.text(&format!("{path}.name"), name, MAX_NAME_CHARS);
                    v.require(
                        !branches.is_empty(),
                        format!("{path}.branches"),
                        FieldCode::Required,
                        "at least one branch",
                    );
                    for (b, branch) in branches.iter().enumerate() {
                        check_condition(v, &format!("{path}.branches[{b}].when"), &self.form, &branch.when);
                        self.check_nodes(v, &format!("{path}.branches[{b}].nodes"), &branch.nodes, ids);
                    }
                    self.check_nodes(v, &format!("{path}.default"), default, ids);
                }
            }
        }
    }

    fn check_approvers(&self, v: &mut Validator, path: &str, approvers: &Approvers) {
        match approvers {
            Approvers::Users { users } => {
                v.require(!users.is_empty(), path, FieldCode::Required, "name at least one user");
                v.distinct(path, users);
            }
            Approvers::Leader { level: n } | Approvers::LeaderChain { levels: n } => {
                v.require((1..=10).contains(n), path, FieldCode::OutOfRange, "levels 1-10");
            }
            Approvers::FormField { field } => {
                let user_field = self.form.iter().any(|f| &f.name == field && f.kind == FieldKind::User);
                v.require(user_field, path, FieldCode::InvalidFormat, format!("no user field {field:?} in this form"));
            }
            Approvers::Role { .. } | Approvers::DepartmentHead { .. } | Approvers::Picked => {}
        }
    }
}

/// A published version, as instances pin it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedDefinition {
    /// The definition.
    pub definition_id: ApprovalDefinitionId,
    /// 1, 2, ...
    pub version: u32,
    /// BLAKE3 of the body's JSON bytes, 64 hex digits.
    pub hash: String,
    /// The body.
    pub body: DefinitionBody,
}

/// The folded definition: its versions so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DefinitionState {
    /// Every published version, oldest first.
    pub versions: Vec<PublishedDefinition>,
}

/// What can be asked of a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefinitionCommand {
    /// Publish `body` as the next version (version 1 for a new definition). Publishing a body
    /// equal to the latest version changes nothing.
    Publish {
        /// Chosen by the caller.
        id: ApprovalDefinitionId,
        /// The body.
        body: DefinitionBody,
    },
}

/// Payload of `ApprovalDefinitionPublished`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalDefinitionPublished {
    /// The version published.
    #[serde(flatten)]
    pub definition: PublishedDefinition,
    /// Who published it.
    pub published_by: Option<UserId>,
}

events! {
    /// What happens to approval definitions.
    pub enum DefinitionEvent {
        /// A version was published.
        ApprovalDefinitionPublished(ApprovalDefinitionPublished) = 1,
    }
}

/// The approval definition aggregate.
#[derive(Debug)]
pub struct Definition;

impl Aggregate for Definition {
    type State = DefinitionState;
    type Command = DefinitionCommand;
    type Event = DefinitionEvent;

    fn decide(
        state: &DefinitionState,
        command: DefinitionCommand,
        ctx: &Context,
    ) -> Result<Vec<DefinitionEvent>, DomainError> {
        let DefinitionCommand::Publish { id, body } = command;
        let mut v = Validator::new();
        body.check(&mut v);
        v.finish(())?;
        if let Some(latest) = state.versions.last() {
            if latest.definition_id != id {
                return Err(DomainError::Rule("the definition id does not match its stream".into()));
            }
            if latest.body == body {
                return Ok(Vec::new());
            }
        }
        let version = u32::try_from(state.versions.len() + 1).unwrap_or(u32::MAX);
        let hash = body.hash();
        Ok(vec![DefinitionEvent::ApprovalDefinitionPublished(ApprovalDefinitionPublished {
            definition: PublishedDefinition { definition_id: id, version, hash, body },
            published_by: ctx.actor,
        })])
    }

    fn evolve(mut state: DefinitionState, event: &DefinitionEvent) -> DefinitionState {
        let DefinitionEvent::ApprovalDefinitionPublished(e) = event;
        state.versions.push(e.definition.clone());
        state
    }
}
