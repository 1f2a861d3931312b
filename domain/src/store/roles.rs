//! Database roles, for rotating the database password with alternating users:
//! setting a role's password from a SCRAM verifier computed on our side (so
//! the password never appears in a statement or the server's log), and
//! removing a role's password once its rotation is finished.

use super::{PooledConn, StoreError};
use diesel_async::RunQueryDsl;

/// A role name we quote ourselves: lowercase letters, digits and '_'.
fn checked_role(role: &str) -> Result<&str, StoreError> {
    if !role.is_empty()
        && role.len() <= 63
        && role.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        Ok(role)
    } else {
        Err(StoreError::invalid("role", "a role to rotate is lowercase letters, digits and '_' (at most 63)"))
    }
}

/// `ALTER ROLE role PASSWORD 'verifier'` with a `SCRAM-SHA-256$...` verifier.
pub async fn set_password_verifier(conn: &mut PooledConn, role: &str, verifier: &str) -> Result<(), StoreError> {
    let role = checked_role(role)?;
    if !verifier.starts_with("SCRAM-SHA-256$")
        || !verifier.chars().all(|c| c.is_ascii_alphanumeric() || "$:+/=-".contains(c))
    {
        return Err(StoreError::invalid("verifier", "not a SCRAM-SHA-256 verifier"));
    }
    diesel::sql_query(format!("ALTER ROLE \"{role}\" PASSWORD '{verifier}'")).execute(conn).await?;
    Ok(())
}

/// `ALTER ROLE role PASSWORD NULL`: the role's old password stops working.
pub async fn clear_password(conn: &mut PooledConn, role: &str) -> Result<(), StoreError> {
    let role = checked_role(role)?;
    diesel::sql_query(format!("ALTER ROLE \"{role}\" PASSWORD NULL")).execute(conn).await?;
    Ok(())
}
