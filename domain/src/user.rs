//! The user aggregate: staff accounts, their profile and privacy, credentials, lock state,
//! logins and sessions.
//!
//! The domain never sees a password: it receives an already-hashed credential (a PHC string
//! such as `$argon2id$...`) and the facts of the password policy, decided by the caller.
//! Consecutive failed logins reaching the caller's lockout threshold lock the account.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregate, Lifecycle};
use crate::context::Context;
use crate::customer::{PersonalDataErased, MAX_TEXT_CHARS as MAX_REASON_CHARS};
use crate::error::{DomainError, FieldCode};
use crate::events;
use crate::ids::{DepartmentId, EntryId, Timestamp, UserId};
use crate::validate::Validator;

/// Personal data of a user. Stored sealed with the user's data key; once erased it reads as
/// empty (hence `serde(default)`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserPersonal {
    /// Phone in E.164.
    pub phone: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
}

/// The profile fields whose visibility a user controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileField {
    /// Phone.
    Phone,
    /// E-mail.
    Email,
    /// Position.
    Position,
}

/// Who may see a profile field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Every user.
    #[default]
    Everyone,
    /// Users of the same department.
    Department,
    /// The user alone (and administrators).
    OnlyMe,
}

/// Why an account was locked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "detail")]
pub enum LockReason {
    /// Too many consecutive failed logins.
    FailedLogins(u32),
    /// An administrator locked it.
    Administrative(String),
}

/// Why a login failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginFailure {
    /// Wrong password.
    BadPassword,
    /// The account is locked.
    Locked,
    /// The account is deactivated.
    Deactivated,
}

/// Account state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    /// Not created yet.
    #[default]
    Uncreated,
    /// Can log in.
    Active,
    /// Locked; an administrator unlocks.
    Locked,
    /// Deactivated (left the company); can be reactivated.
    Deactivated,
}

impl Lifecycle for UserStatus {
    const ENTITY: &'static str = "user";
    const ABSENT: Self = UserStatus::Uncreated;

    fn name(self) -> &'static str {
        match self {
            UserStatus::Uncreated => "uncreated",
            UserStatus::Active => "active",
            UserStatus::Locked => "locked",
            UserStatus::Deactivated => "deactivated",
        }
    }
}

/// The folded user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserState {
    /// Its id.
    pub id: Option<UserId>,
    /// Account state.
    pub status: UserStatus,
    /// Login name.
    pub username: Option<String>,
    /// Department.
    pub department: Option<DepartmentId>,
    /// Whether a credential is set.
    pub has_credential: bool,
    /// Whether the password must change at next login.
    pub must_change_password: bool,
    /// Failed logins since the last success.
    pub consecutive_failures: u32,
    /// Field visibility.
    pub privacy: BTreeMap<ProfileField, Visibility>,
    /// Open sessions.
    pub sessions: BTreeSet<EntryId>,
    /// The current credential (PHC string), for the caller to verify a password against.
    pub credential: Option<String>,
    /// The credentials set before the current one, newest first (at most
    /// [`PASSWORD_HISTORY`] - 1), for the caller's "not one of the last passwords" check.
    pub previous_credentials: Vec<String>,
    /// When the last failed login happened.
    pub last_failure_at: Option<Timestamp>,
    /// Whether the account is locked because of failed logins (not by an administrator).
    pub locked_by_failures: bool,
    /// Whether the user's personal data was erased (it is not recorded again).
    pub erased: bool,
}

/// How many passwords, the current one included, a new password must differ from.
pub const PASSWORD_HISTORY: usize = 5;

/// The profile fields shared by creation and updates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserProfile {
    /// Name shown to others.
    pub display_name: String,
    /// Department.
    pub department: DepartmentId,
    /// Job title.
    pub position: Option<String>,
    /// Personal data.
    pub personal: UserPersonal,
}

/// The caller's verdict on a new password, against the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordFacts {
    /// Length and character classes are as the policy asks.
    pub meets_policy: bool,
    /// It equals one of the user's recent passwords.
    pub recently_used: bool,
}

/// What can be asked of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    /// Create an account (its username and employee number are reserved by the caller).
    Create {
        /// Chosen by the caller.
        id: UserId,
        /// Login name: 3-32 of `a-z 0-9 . _ -`.
        username: String,
        /// Employee number: 1-32 of `A-Z a-z 0-9 -`.
        employee_no: String,
        /// Profile.
        profile: UserProfile,
    },
    /// Replace the profile.
    UpdateProfile {
        /// The new profile.
        profile: UserProfile,
    },
    /// Erase the user's personal data (phone, e-mail) for good: PIPL art. 47, GDPR art. 17.
    /// The caller destroys the data keys once the event is durable. Erasing an erased user
    /// changes nothing.
    ErasePersonalData {
        /// Why, no personal data.
        reason: String,
    },
    /// Set who may see a field.
    SetPrivacy {
        /// The field.
        field: ProfileField,
        /// Who may see it.
        visibility: Visibility,
    },
    /// Set the credential.
    SetPassword {
        /// The hashed credential (PHC string, argon2id).
        credential: String,
        /// The policy's verdict.
        facts: PasswordFacts,
    },
    /// Force a password change at next login.
    RequirePasswordChange,
    /// Lock the account.
    Lock {
        /// Why.
        reason: String,
    },
    /// Unlock.
    Unlock,
    /// Deactivate.
    Deactivate,
    /// Reactivate.
    Reactivate,
    /// A login succeeded and opened a session.
    RecordLoginSuccess {
        /// The new session.
        session: EntryId,
        /// Client address.
        client: Option<String>,
        /// BLAKE3 of the session's bearer secret, 64 lower-case hex digits (the secret itself
        /// is never stored).
        token_hash: Option<String>,
    },
    /// Lift a lock caused by failed logins once `lockout_us` microseconds have passed since
    /// the last failure; refused before then and for locks set by an administrator.
    ExpireLock {
        /// How long a failed-login lock lasts, in microseconds.
        lockout_us: i64,
    },
    /// A login failed.
    RecordLoginFailure {
        /// Why.
        reason: LoginFailure,
        /// Client address.
        client: Option<String>,
        /// Consecutive failures that lock the account.
        lockout_threshold: u32,
    },
    /// End every open session (an administrator's revocation).
    EndAllSessions,
    /// A session ended (logout or expiry).
    EndSession {
        /// The session.
        session: EntryId,
    },
}

/// Payload of `UserCreated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCreated {
    /// The user.
    pub user_id: UserId,
    /// Login name.
    pub username: String,
    /// Employee number.
    pub employee_no: String,
    /// Profile (personal data inside `profile.personal`).
    pub profile: UserProfile,
}

/// Payload of `UserProfileUpdated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserProfileUpdated {
    /// The new profile.
    pub profile: UserProfile,
}

/// Payload of `UserPrivacyChanged`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPrivacyChanged {
    /// The field.
    pub field: ProfileField,
    /// Who may see it.
    pub visibility: Visibility,
}

/// Payload of `UserPasswordSet`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPasswordSet {
    /// The hashed credential.
    pub credential: String,
}

/// Payload of `UserPasswordChangeRequired`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPasswordChangeRequired {}

/// Payload of `UserLocked`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserLocked {
    /// Why.
    pub reason: LockReason,
}

/// Payload of `UserUnlocked`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserUnlocked {}

/// Payload of `UserDeactivated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDeactivated {}

/// Payload of `UserReactivated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserReactivated {}

/// Payload of `UserLoginSucceeded`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserLoginSucceeded {
    /// The session opened.
    pub session_id: EntryId,
    /// Client address.
    pub client: Option<String>,
    /// When.
    pub at: Timestamp,
    /// BLAKE3 of the session's bearer secret, hex (schema 2; `None` in schema 1 payloads).
    #[serde(default)]
    pub token_hash: Option<String>,
}

/// Payload of `UserLoginFailed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserLoginFailed {
    /// Why.
    pub reason: LoginFailure,
    /// Client address.
    pub client: Option<String>,
    /// Failures in a row, this one included.
    pub consecutive: u32,
    /// When.
    pub at: Timestamp,
}

/// Payload of `UserSessionEnded`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSessionEnded {
    /// The session.
    pub session_id: EntryId,
}

events! {
    /// What happens to user accounts.
    pub enum UserEvent {
        /// Created.
        UserCreated(UserCreated) = 1,
        /// Profile replaced.
        UserProfileUpdated(UserProfileUpdated) = 1,
        /// A field's visibility changed.
        UserPrivacyChanged(UserPrivacyChanged) = 1,
        /// Credential set.
        UserPasswordSet(UserPasswordSet) = 1,
        /// Password change required at next login.
        UserPasswordChangeRequired(UserPasswordChangeRequired) = 1,
        /// Locked.
        UserLocked(UserLocked) = 1,
        /// Unlocked.
        UserUnlocked(UserUnlocked) = 1,
        /// Deactivated.
        UserDeactivated(UserDeactivated) = 1,
        /// Reactivated.
        UserReactivated(UserReactivated) = 1,
        /// Logged in.
        UserLoginSucceeded(UserLoginSucceeded) = 2,
        /// A login failed.
        UserLoginFailed(UserLoginFailed) = 1,
        /// A session ended.
        UserSessionEnded(UserSessionEnded) = 1,
        /// The user's personal data was erased (its data keys destroyed).
        UserPersonalDataErased(PersonalDataErased) = 1,
    }
}

fn checked_profile(v: &mut Validator, profile: UserProfile) -> UserProfile {
    UserProfile {
        display_name: v.name("profile.display_name", &profile.display_name, 64),
        department: profile.department,
        position: v.optional_name("profile.position", profile.position.as_deref(), 64),
        personal: UserPersonal {
            phone: profile.personal.phone.map(|p| v.phone("profile.personal.phone", &p)),
            email: profile.personal.email.map(|e| v.email("profile.personal.email", &e)),
        },
    }
}

/// The normal form of a username (lower case), or why it is not one.
pub fn checked_username(v: &mut Validator, username: &str) -> String {
    let username = username.trim().to_lowercase();
    let ok = (3..=32).contains(&username.len())
        && username.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    v.require(ok, "username", FieldCode::InvalidFormat, "use 3-32 of a-z, 0-9, '.', '_' and '-'");
    username
}

/// A client address, at most 128 characters.
fn checked_client(client: Option<String>) -> Result<Option<String>, DomainError> {
    let mut v = Validator::new();
    let client = v.optional_text("client", client.as_deref(), 128);
    v.finish(client)
}

/// A `UserSessionEnded` for every open session: a password change, a lock or a deactivation
/// revokes them all.
fn ended_sessions(state: &UserState) -> Vec<UserEvent> {
    state.sessions.iter().map(|s| UserEvent::UserSessionEnded(UserSessionEnded { session_id: *s })).collect()
}

const ANY: &[UserStatus] = &[UserStatus::Active, UserStatus::Locked, UserStatus::Deactivated];

/// The user aggregate.
#[derive(Debug)]
pub struct User;

impl Aggregate for User {
    type State = UserState;
    type Command = UserCommand;
    type Event = UserEvent;

    fn decide(state: &UserState, command: UserCommand, ctx: &Context) -> Result<Vec<UserEvent>, DomainError> {
        use UserCommand as C;
        use UserEvent as E;
        use UserStatus as S;
        let events = match command {
            C::Create { id, username, employee_no, profile } => {
                if state.status != S::Uncreated {
                    return Err(DomainError::AlreadyExists { entity: "user" });
                }
                let mut v = Validator::in_context(ctx);
                let username = checked_username(&mut v, &username);
                let employee_no = v.code("employee_no", &employee_no, 32, &['-']);
                let profile = checked_profile(&mut v, profile);
                let (username, employee_no, profile) = v.finish((username, employee_no, profile))?;
                vec![E::UserCreated(UserCreated { user_id: id, username, employee_no, profile })]
            }
            C::ErasePersonalData { reason } => {
                if state.id.is_none() {
                    return Err(DomainError::NotFound { entity: "user" });
                }
                let mut v = Validator::new();
                let reason = v.erasure_reason("reason", &reason, MAX_REASON_CHARS);
                let reason = v.finish(reason)?;
                if state.erased {
                    return Ok(Vec::new());
                }
                vec![E::UserPersonalDataErased(PersonalDataErased { reason })]
            }
            C::UpdateProfile { profile } => {
                state.status.require(ANY, "update")?;
                if state.erased && profile.personal != UserPersonal::default() {
                    return Err(DomainError::Rule(
                        "this user's personal data was erased; it is not recorded again".into(),
                    ));
                }
                let mut v = Validator::in_context(ctx);
                let profile = checked_profile(&mut v, profile);
                vec![E::UserProfileUpdated(UserProfileUpdated { profile: v.finish(profile)? })]
            }
            C::SetPrivacy { field, visibility } => {
                state.status.require(ANY, "change privacy of")?;
                if state.privacy.get(&field).copied().unwrap_or_default() == visibility {
                    return Ok(Vec::new());
                }
                vec![E::UserPrivacyChanged(UserPrivacyChanged { field, visibility })]
            }
            C::SetPassword { credential, facts } => {
                state.status.require(ANY, "set the password of")?;
                let mut v = Validator::new();
                v.require(
                    credential.starts_with("$argon2id$") && credential.len() <= 256,
                    "credential",
                    FieldCode::InvalidFormat,
                    "must be an argon2id PHC string",
                );
                v.require(
                    facts.meets_policy,
                    "password",
                    FieldCode::InvalidFormat,
                    "does not meet the password policy",
                );
                v.require(!facts.recently_used, "password", FieldCode::Duplicate, "was used recently");
                let mut events = ended_sessions(state);
                events.push(E::UserPasswordSet(UserPasswordSet { credential: v.finish(credential)? }));
                events
            }
            C::RequirePasswordChange => {
                state.status.require(ANY, "require a password change of")?;
                if state.must_change_password {
                    return Ok(Vec::new());
                }
                vec![E::UserPasswordChangeRequired(UserPasswordChangeRequired {})]
            }
            C::Lock { reason } => {
                state.status.require(&[S::Active], "lock")?;
                let mut v = Validator::new();
                let reason = v.text("reason", &reason, 500);
                let reason = LockReason::Administrative(v.finish(reason)?);
                let mut events = ended_sessions(state);
                events.push(E::UserLocked(UserLocked { reason }));
                events
            }
            C::Unlock => {
                state.status.require(&[S::Locked], "unlock")?;
                vec![E::UserUnlocked(UserUnlocked {})]
            }
            C::Deactivate => {
                state.status.require(&[S::Active, S::Locked], "deactivate")?;
                let mut events = ended_sessions(state);
                events.push(E::UserDeactivated(UserDeactivated {}));
                events
            }
            C::Reactivate => {
                state.status.require(&[S::Deactivated], "reactivate")?;
                vec![E::UserReactivated(UserReactivated {})]
            }
            C::RecordLoginSuccess { session, client, token_hash } => {
                state.status.require(&[S::Active], "log in as")?;
                if !state.has_credential {
                    return Err(DomainError::Rule("the account has no password yet".into()));
                }
                if state.sessions.contains(&session) {
                    return Err(DomainError::AlreadyExists { entity: "session" });
                }
                let client = checked_client(client)?;
                let mut v = Validator::new();
                if let Some(hash) = &token_hash {
                    let ok = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                    v.require(ok, "token_hash", FieldCode::InvalidFormat, "must be 64 lower-case hex digits");
                }
                let token_hash = v.finish(token_hash)?;
                vec![E::UserLoginSucceeded(UserLoginSucceeded { session_id: session, client, at: ctx.now, token_hash })]
            }
            C::ExpireLock { lockout_us } => {
                state.status.require(&[S::Locked], "expire the lock of")?;
                let since = state.last_failure_at.unwrap_or(Timestamp(i64::MIN));
                if !state.locked_by_failures || ctx.now.0 < since.0.saturating_add(lockout_us) {
                    return Err(DomainError::Rule("the lock has not expired".into()));
                }
                vec![E::UserUnlocked(UserUnlocked {})]
            }
            C::RecordLoginFailure { reason, client, lockout_threshold } => {
                state.status.require(ANY, "record a login failure of")?;
                let client = checked_client(client)?;
                let consecutive = state.consecutive_failures.saturating_add(1);
                let mut events = vec![E::UserLoginFailed(UserLoginFailed { reason, client, consecutive, at: ctx.now })];
                if state.status == S::Active && lockout_threshold > 0 && consecutive >= lockout_threshold {
                    events.extend(ended_sessions(state));
                    events.push(E::UserLocked(UserLocked { reason: LockReason::FailedLogins(consecutive) }));
                }
                events
            }
            C::EndAllSessions => {
                state.status.require(ANY, "end the sessions of")?;
                ended_sessions(state)
            }
            C::EndSession { session } => {
                state.status.require(ANY, "end a session of")?;
                if !state.sessions.contains(&session) {
                    return Err(DomainError::NotFound { entity: "session" });
                }
                vec![E::UserSessionEnded(UserSessionEnded { session_id: session })]
            }
        };
        Ok(events)
    }

    fn evolve(mut state: UserState, event: &UserEvent) -> UserState {
        use UserEvent as E;
        match event {
            E::UserCreated(e) => {
                state.id = Some(e.user_id);
                state.status = UserStatus::Active;
                state.username = Some(e.username.clone());
                state.department = Some(e.profile.department);
            }
            E::UserProfileUpdated(e) => state.department = Some(e.profile.department),
            E::UserPersonalDataErased(_) => state.erased = true,
            E::UserPrivacyChanged(e) => {
                state.privacy.insert(e.field, e.visibility);
            }
            E::UserPasswordSet(e) => {
                if let Some(old) = state.credential.replace(e.credential.clone()) {
                    state.previous_credentials.insert(0, old);
                    state.previous_credentials.truncate(PASSWORD_HISTORY - 1);
                }
                state.has_credential = true;
                state.must_change_password = false;
            }
            E::UserPasswordChangeRequired(_) => state.must_change_password = true,
            E::UserLocked(e) => {
                state.status = UserStatus::Locked;
                state.locked_by_failures = matches!(e.reason, LockReason::FailedLogins(_));
            }
            E::UserUnlocked(_) => {
                state.status = UserStatus::Active;
                state.consecutive_failures = 0;
                state.locked_by_failures = false;
            }
            E::UserDeactivated(_) => state.status = UserStatus::Deactivated,
            E::UserReactivated(_) => {
                state.status = UserStatus::Active;
                state.consecutive_failures = 0;
            }
            E::UserLoginSucceeded(e) => {
                state.consecutive_failures = 0;
                state.sessions.insert(e.session_id);
            }
            E::UserLoginFailed(e) => {
                state.consecutive_failures = e.consecutive;
                state.last_failure_at = Some(e.at);
            }
            E::UserSessionEnded(e) => {
                state.sessions.remove(&e.session_id);
            }
        }
        state
    }
}
