//! Files attached to approval forms, kept outside the log in `<data>/attachments/`, each
//! under the BLAKE3 of its bytes (64 lower-case hex digits); the log holds only a file's name,
//! size and hash, in the form's attachment fields.
//!
//! Invariants:
//! - A file is written whole or not at all (a temporary file, fsync, rename), so a name that
//!   exists always holds bytes whose BLAKE3 is that name; the same bytes are stored once.
//! - Only names of exactly 64 hex digits are ever joined to the folder, so no request can
//!   reach a path outside it.
//! - A form may name only a stored file, with its exact size, that its author uploaded or the
//!   approval named before ([`Attachments::check_form`]): a hash recorded in the log can
//!   always be fetched and verified against the file, and knowing a hash is not enough to
//!   attach (and then read) someone else's file. Files and their uploader lists are
//!   owner-only (0600).

use std::io::Write;
use std::path::{Path, PathBuf};

use oacis_domain::approval::definition::DefinitionBody;
use oacis_domain::approval::form::{FieldKind, FormValues};
use oacis_domain::ids::UserId;
use oacis_domain::{DomainError, FieldCode, FieldError};

/// The attachment folder of a data folder.
#[derive(Debug, Clone)]
pub struct Attachments {
    dir: PathBuf,
}

fn is_hash(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Attachments {
    /// The attachments of the data folder `data`.
    #[must_use]
    pub fn in_data(data: &Path) -> Self {
        Attachments { dir: data.join("attachments") }
    }

    /// Stores `bytes` uploaded by `uploader` (owner-only permissions); returns their BLAKE3
    /// (hex). Who uploaded a file is kept beside it (`<hash>.by`, one user id per line), so a
    /// form names only files its author uploaded.
    ///
    /// # Errors
    /// The folder or file cannot be written.
    pub fn put(&self, bytes: &[u8], uploader: UserId) -> std::io::Result<String> {
        let hash = blake3::hash(bytes).to_hex().to_string();
        let path = self.dir.join(&hash);
        std::fs::create_dir_all(&self.dir)?;
        if !path.exists() {
            let temporary = self.dir.join(format!(".{hash}.partial-{}", std::process::id()));
            // A temporary left by an interrupted upload is stale.
            let _ = std::fs::remove_file(&temporary);
            let mut file = owner_only(&temporary)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            drop(file);
            std::fs::rename(&temporary, &path)?;
        }
        if !self.uploaded_by(&hash, uploader) {
            let mut options = std::fs::OpenOptions::new();
            options.create(true).append(true);
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut by = options.open(self.dir.join(format!("{hash}.by")))?;
            writeln!(by, "{uploader}")?;
            by.sync_all()?;
        }
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(hash)
    }

    /// Whether `user` uploaded the file `hash`.
    #[must_use]
    pub fn uploaded_by(&self, hash: &str, user: UserId) -> bool {
        is_hash(hash)
            && std::fs::read_to_string(self.dir.join(format!("{hash}.by")))
                .is_ok_and(|by| by.lines().any(|line| line == user.to_string()))
    }

    /// The size in bytes of the stored file `hash`, if there is one.
    #[must_use]
    pub fn size(&self, hash: &str) -> Option<u64> {
        is_hash(hash).then(|| std::fs::metadata(self.dir.join(hash)).ok().map(|m| m.len())).flatten()
    }

    /// The bytes of the stored file `hash`, if there is one.
    ///
    /// # Errors
    /// The file exists but cannot be read.
    pub fn read(&self, hash: &str) -> std::io::Result<Option<Vec<u8>>> {
        if !is_hash(hash) {
            return Ok(None);
        }
        match std::fs::read(self.dir.join(hash)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Checks that every attachment field of `form` names a stored file with its size that
    /// `author` uploaded, or that the approval's form named already (`earlier`).
    ///
    /// # Errors
    /// [`DomainError::Validation`] naming each field (`form.<name>`) that does not; the same
    /// answer whether the file does not exist or is someone else's.
    pub fn check_form(
        &self,
        body: &DefinitionBody,
        form: &FormValues,
        author: UserId,
        earlier: Option<&FormValues>,
    ) -> Result<(), DomainError> {
        let named_before: Vec<String> =
            earlier.map(|e| named_in(e, body).into_iter().map(|(h, _, _)| h).collect()).unwrap_or_default();
        let errors: Vec<FieldError> = body
            .form
            .iter()
            .filter(|f| f.kind == FieldKind::Attachment)
            .filter_map(|f| {
                let value = form.get(&f.name).filter(|v| !v.is_null())?;
                let hash = value.get("blake3").and_then(serde_json::Value::as_str).unwrap_or_default();
                let size = value.get("size").and_then(serde_json::Value::as_u64);
                let mine = self.uploaded_by(hash, author) || named_before.iter().any(|h| h == hash);
                (!mine || self.size(hash) != size || size.is_none()).then(|| FieldError {
                    field: format!("form.{}", f.name),
                    code: FieldCode::InvalidFormat,
                    message: "no file you uploaded with this BLAKE3 and size (upload it first)".into(),
                })
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(DomainError::Validation(errors))
        }
    }
}

/// A new file readable and writable by its owner only.
fn owner_only(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// The attachment hashes an approval's forms (as submitted, resubmitted or edited) name.
#[must_use]
pub fn named_in(form: &FormValues, body: &DefinitionBody) -> Vec<(String, String, u64)> {
    body.form
        .iter()
        .filter(|f| f.kind == FieldKind::Attachment)
        .filter_map(|f| {
            let value = form.get(&f.name)?;
            Some((
                value.get("blake3")?.as_str()?.to_owned(),
                value.get("name")?.as_str()?.to_owned(),
                value.get("size")?.as_u64()?,
            ))
        })
        .collect()
}
