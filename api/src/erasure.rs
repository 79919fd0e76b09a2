//! Erasure of a customer's personal data (crypto-shredding; PIPL art. 47, GDPR art. 17): the
//! erasure event is appended first (who, when, why; no personal data), and once it is durable
//! the customer's data key is destroyed, so the sealed personal data in every record, export
//! and backup of the log can no longer be read, while every hash and proof still verifies.
//!
//! Invariants: the key is destroyed only after the event is durable; if destroying fails or
//! the process dies in between, the event is still in the log, and [`apply_recorded`]
//! destroys the key on the next start. The same applies to a key store restored from a backup
//! taken before an erasure: erasures recorded in the log win.

use oacis_domain::customer::{Customer, CustomerCommand};
use oacis_domain::ids::CustomerId;
use oacis_eventlog::EventStore;

use crate::command::{CommandBus, CommandError, Executed, Origin};

/// Erases `customer`'s personal data: the `CustomerPersonalDataErased` event (none if it was
/// erased before), then its data key.
///
/// # Errors
/// The command's errors (NOT_FOUND for an unknown customer, VALIDATION for a blank reason);
/// [`CommandError::Keys`] if the key could not be destroyed (the event is recorded, and the
/// key is destroyed on the next start or the next attempt).
pub async fn erase_customer(
    bus: &CommandBus,
    customer: CustomerId,
    reason: String,
    origin: &Origin,
) -> Result<Executed, CommandError> {
    let stream = customer.stream();
    let executed =
        bus.execute::<Customer>(stream.clone(), CustomerCommand::ErasePersonalData { reason }, origin).await?;
    if let Some(keys) = bus.store().keys().cloned() {
        tokio::task::spawn_blocking(move || keys.erase(&stream))
            .await
            .map_err(|e| CommandError::Keys(e.to_string()))?
            .map_err(|e| CommandError::Keys(e.to_string()))?;
    }
    Ok(executed)
}

/// Destroys the keys of every customer whose erasure the log records (from the replayed
/// views). Answers how many keys were destroyed: none, unless the process stopped between
/// an erasure event and its key's destruction, or the key store was restored from a backup
/// older than an erasure.
///
/// # Errors
/// [`CommandError::Keys`] when the key store cannot be rewritten.
pub fn apply_recorded(bus: &CommandBus) -> Result<usize, CommandError> {
    let Some(keys) = bus.store().keys() else { return Ok(0) };
    let erased: Vec<String> = bus
        .projections()
        .read(|views| views.directory.erased().map(|id| id.stream()).collect())
        .map_err(CommandError::Views)?;
    keys.erase_all(erased.iter().map(String::as_str)).map_err(|e| CommandError::Keys(e.to_string()))
}
