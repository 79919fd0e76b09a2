//! The department aggregate: a tree of departments that can be renamed, moved and closed.
//!
//! A department's decision sees only its own state, so the caller supplies the facts about
//! the rest of the tree: whether a parent exists and is open, the chain of ancestors of a new
//! parent (to refuse cycles), and whether the department still has children or members (to
//! refuse closing it). With those facts true, the parent links never form a cycle (a property
//! test in `tests/properties.rs` drives random trees to check it).

use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::context::Context;
use crate::error::DomainError;
use crate::events;
use crate::ids::{DepartmentId, UserId};
use crate::validate::Validator;

/// Where a department stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepartmentStatus {
    /// Not created yet.
    #[default]
    Uncreated,
    /// In use.
    Open,
    /// Closed; final.
    Closed,
}

/// The folded department.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DepartmentState {
    /// Its id.
    pub id: Option<DepartmentId>,
    /// Lifecycle.
    pub status: DepartmentStatus,
    /// Its name.
    pub name: Option<String>,
    /// Its parent (`None` for a root).
    pub parent: Option<DepartmentId>,
    /// Its leader (负责人), who approves for its members where a definition says "leader".
    pub leader: Option<UserId>,
}

/// What can be asked of a department.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepartmentCommand {
    /// Create a department.
    Create {
        /// Chosen by the caller.
        id: DepartmentId,
        /// Name.
        name: String,
        /// Parent, if any.
        parent: Option<DepartmentId>,
        /// Whether the parent exists and is open (read by the caller).
        parent_open: bool,
    },
    /// Rename.
    Rename {
        /// The new name.
        name: String,
    },
    /// Move under another parent (or to the root).
    Move {
        /// The new parent.
        parent: Option<DepartmentId>,
        /// The new parent's ancestors, nearest first, up to the root.
        parent_ancestors: Vec<DepartmentId>,
        /// Whether the new parent exists and is open (read by the caller).
        parent_open: bool,
    },
    /// Name (or, with `None`, clear) the department's leader.
    SetLeader {
        /// The leader.
        leader: Option<UserId>,
        /// Whether that user exists and is active (read by the caller).
        leader_active: bool,
    },
    /// Close.
    Close {
        /// Whether open departments still sit under this one.
        has_children: bool,
        /// Whether users still belong to it.
        has_members: bool,
    },
}

/// Payload of `DepartmentCreated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepartmentCreated {
    /// The department.
    pub department_id: DepartmentId,
    /// Name.
    pub name: String,
    /// Parent.
    pub parent: Option<DepartmentId>,
}

/// Payload of `DepartmentRenamed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepartmentRenamed {
    /// The new name.
    pub name: String,
}

/// Payload of `DepartmentMoved`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepartmentMoved {
    /// Old parent.
    pub from: Option<DepartmentId>,
    /// New parent.
    pub to: Option<DepartmentId>,
}

/// Payload of `DepartmentLeaderSet`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepartmentLeaderSet {
    /// The leader before.
    pub from: Option<UserId>,
    /// The leader now (`None`: no leader).
    pub to: Option<UserId>,
}

/// Payload of `DepartmentClosed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepartmentClosed {}

events! {
    /// What happens to departments.
    pub enum DepartmentEvent {
        /// Created.
        DepartmentCreated(DepartmentCreated) = 1,
        /// Renamed.
        DepartmentRenamed(DepartmentRenamed) = 1,
        /// Moved in the tree.
        DepartmentMoved(DepartmentMoved) = 1,
        /// Its leader named or cleared.
        DepartmentLeaderSet(DepartmentLeaderSet) = 1,
        /// Closed.
        DepartmentClosed(DepartmentClosed) = 1,
    }
}

fn require_open(state: &DepartmentState, action: &'static str) -> Result<DepartmentId, DomainError> {
    match (state.status, state.id) {
        (DepartmentStatus::Open, Some(id)) => Ok(id),
        (DepartmentStatus::Closed, _) => {
            Err(DomainError::InvalidTransition { entity: "department", status: "closed", action })
        }
        _ => Err(DomainError::NotFound { entity: "department" }),
    }
}

/// A department may only hang under a parent that exists and is open; otherwise a later
/// department could be created as that parent below its own child.
fn require_parent(parent: Option<DepartmentId>, parent_open: bool) -> Result<(), DomainError> {
    if parent.is_some() && !parent_open {
        return Err(DomainError::Rule("the parent department does not exist or is closed".into()));
    }
    Ok(())
}

fn checked_name(name: &str) -> Result<String, DomainError> {
    let mut v = Validator::new();
    let name = v.text("name", name, 64);
    v.finish(name)
}

/// The department aggregate.
#[derive(Debug)]
pub struct Department;

impl Aggregate for Department {
    type State = DepartmentState;
    type Command = DepartmentCommand;
    type Event = DepartmentEvent;

    fn decide(
        state: &DepartmentState,
        command: DepartmentCommand,
        _ctx: &Context,
    ) -> Result<Vec<DepartmentEvent>, DomainError> {
        use DepartmentCommand as C;
        use DepartmentEvent as E;
        let event = match command {
            C::Create { id, name, parent, parent_open } => {
                if state.status != DepartmentStatus::Uncreated {
                    return Err(DomainError::AlreadyExists { entity: "department" });
                }
                if parent == Some(id) {
                    return Err(DomainError::Rule("a department cannot be its own parent".into()));
                }
                require_parent(parent, parent_open)?;
                E::DepartmentCreated(DepartmentCreated { department_id: id, name: checked_name(&name)?, parent })
            }
            C::Rename { name } => {
                require_open(state, "rename")?;
                let name = checked_name(&name)?;
                if state.name.as_deref() == Some(name.as_str()) {
                    return Ok(Vec::new());
                }
                E::DepartmentRenamed(DepartmentRenamed { name })
            }
            C::Move { parent, parent_ancestors, parent_open } => {
                let id = require_open(state, "move")?;
                if parent == Some(id) || parent_ancestors.contains(&id) {
                    return Err(DomainError::Rule(
                        "a department cannot move under itself or one of its descendants".into(),
                    ));
                }
                require_parent(parent, parent_open)?;
                if parent == state.parent {
                    return Ok(Vec::new());
                }
                E::DepartmentMoved(DepartmentMoved { from: state.parent, to: parent })
            }
            C::SetLeader { leader, leader_active } => {
                require_open(state, "set the leader of")?;
                if leader.is_some() && !leader_active {
                    return Err(DomainError::Validation(vec![crate::error::FieldError {
                        field: "leader".into(),
                        code: crate::error::FieldCode::InvalidFormat,
                        message: "not an active user".into(),
                    }]));
                }
                if leader == state.leader {
                    return Ok(Vec::new());
                }
                E::DepartmentLeaderSet(DepartmentLeaderSet { from: state.leader, to: leader })
            }
            C::Close { has_children, has_members } => {
                require_open(state, "close")?;
                if has_children || has_members {
                    return Err(DomainError::Rule(
                        "move its sub-departments and members elsewhere before closing it".into(),
                    ));
                }
                E::DepartmentClosed(DepartmentClosed {})
            }
        };
        Ok(vec![event])
    }

    fn evolve(mut state: DepartmentState, event: &DepartmentEvent) -> DepartmentState {
        use DepartmentEvent as E;
        match event {
            E::DepartmentCreated(e) => {
                state.id = Some(e.department_id);
                state.status = DepartmentStatus::Open;
                state.name = Some(e.name.clone());
                state.parent = e.parent;
            }
            E::DepartmentRenamed(e) => state.name = Some(e.name.clone()),
            E::DepartmentMoved(e) => state.parent = e.to,
            E::DepartmentLeaderSet(e) => state.leader = e.to,
            E::DepartmentClosed(_) => state.status = DepartmentStatus::Closed,
        }
        state
    }
}
