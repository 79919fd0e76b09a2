//! The shape every aggregate has, and a given/when/then harness for testing one.

use std::fmt::Debug;

use crate::context::Context;
use crate::error::DomainError;
use crate::event::DomainEvent;

/// The status of an aggregate whose commands are allowed only in some statuses.
pub trait Lifecycle: Copy + PartialEq + 'static {
    /// What the aggregate is called in errors, e.g. `service case`.
    const ENTITY: &'static str;
    /// The status before the first event.
    const ABSENT: Self;

    /// The status in words, for errors.
    fn name(self) -> &'static str;

    /// `Ok` if `self` is one of `allowed`; `NotFound` before the first event; otherwise an
    /// invalid transition for `action`.
    fn require(self, allowed: &[Self], action: &'static str) -> Result<(), DomainError> {
        if self == Self::ABSENT {
            Err(DomainError::NotFound { entity: Self::ENTITY })
        } else if allowed.contains(&self) {
            Ok(())
        } else {
            Err(DomainError::InvalidTransition { entity: Self::ENTITY, status: self.name(), action })
        }
    }
}

/// An event-sourced aggregate: `decide` turns a command into events against the current
/// state, `evolve` folds an event into the state.
///
/// Invariants: `decide` is pure (its result depends only on its arguments); `evolve` is total
/// and infallible, so that replaying any stored history never fails halfway; and folding the
/// events `decide` returns over the state it was given yields the state the command intends.
pub trait Aggregate {
    /// The folded state; `Default` is the state before the first event.
    type State: Default + Clone + Debug + PartialEq;
    /// What callers ask for.
    type Command;
    /// What happened.
    type Event: DomainEvent + Clone + Debug + PartialEq;

    /// Decides what happens when `command` meets `state`.
    fn decide(state: &Self::State, command: Self::Command, ctx: &Context) -> Result<Vec<Self::Event>, DomainError>;

    /// Folds one event into the state.
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;

    /// Folds a history into a state.
    fn fold<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self::State
    where
        Self::Event: 'a,
    {
        events.into_iter().fold(Self::State::default(), Self::evolve)
    }
}

/// Given/when/then for one aggregate: `Scenario::<Customer>::given(history).when(cmd, ctx)`
/// returns the decision, and checks on the way that evolving the decided events works.
#[derive(Debug)]
pub struct Scenario<A: Aggregate> {
    state: A::State,
}

impl<A: Aggregate> Scenario<A> {
    /// The aggregate after `history`.
    #[must_use]
    pub fn given(history: &[A::Event]) -> Self {
        Scenario { state: A::fold(history) }
    }

    /// The state now.
    #[must_use]
    pub fn state(&self) -> &A::State {
        &self.state
    }

    /// Decides `command`; on success the events are applied, so scenarios can chain.
    pub fn when(&mut self, command: A::Command, ctx: &Context) -> Result<Vec<A::Event>, DomainError> {
        let events = A::decide(&self.state, command, ctx)?;
        for event in &events {
            self.state = A::evolve(self.state.clone(), event);
        }
        Ok(events)
    }
}
