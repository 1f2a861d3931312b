//! The store: Atelier's PostgreSQL, through diesel-async with a deadpool pool.
//! Each business action runs in one transaction and writes the events it
//! raises into the outbox in that same transaction. Every query of business
//! data is scoped by a [`Tenant`]: another business's id behaves exactly like
//! an id that does not exist. Every list is read a page at a time through
//! [`page`], with the count of all its matches.

pub mod accounting;
pub mod canary;
pub mod deploy;
pub mod dlq;
pub mod inbound;
pub mod instances;
pub mod login_throttle;
pub mod migrations;
pub mod notifications;
pub mod outbox;
pub mod processing;
pub mod production;
pub mod products;
pub mod reports;
pub mod roles;
pub mod sales;
pub mod schema;
pub mod social;
pub mod tenancy;

use crate::config::DatabaseSettings;
use crate::rules::costing::CostError;
use crate::rules::money::MoneyError;
use crate::rules::production::StepError;
use crate::rules::sale::SaleError;
use crate::secrets::{SecretError, SecretStore, SecretValue};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::deadpool::{Object, Pool, PoolError};
use std::time::Duration;

pub type Conn = AsyncPgConnection;
pub type PooledConn = Object<AsyncPgConnection>;

/// The business a request or an event acts for. Every query of business data
/// takes one; it comes from the caller's token or the event, never a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tenant {
    pub business_id: i64,
}

impl Tenant {
    pub fn new(business_id: i64) -> Self {
        Tenant { business_id }
    }
}

/// A business rule refused the action; the state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error(transparent)]
    Step(#[from] StepError),
    #[error(transparent)]
    Sale(#[from] SaleError),
    #[error(transparent)]
    Cost(#[from] CostError),
    #[error(transparent)]
    Money(#[from] MoneyError),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such record in the caller's business (whether it exists elsewhere or not).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller may not touch this record (a worker and another worker's step).
    #[error("{0}")]
    Forbidden(String),
    /// A field of the request is invalid; `field` names it.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The action conflicts with the record's state (completing a final sale).
    #[error("{0}")]
    Conflict(String),
    /// A business rule refused the action.
    #[error(transparent)]
    Refused(#[from] RuleError),
    /// The database cannot be reached now: retry later, nothing was changed.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(DieselError),
}

impl StoreError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        StoreError::Invalid { field: field.into(), message: message.into() }
    }

    /// Whether the failure is the infrastructure's (the database is down or the
    /// connection broke) rather than the request's.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// The same failure for another request that shared the failed work (a
    /// batch's reads): its kind kept, a database error kept as its message.
    pub fn for_another(&self) -> StoreError {
        match self {
            StoreError::NotFound(what) => StoreError::NotFound(what),
            StoreError::Forbidden(m) => StoreError::Forbidden(m.clone()),
            StoreError::Invalid { field, message } => StoreError::invalid(field, message),
            StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
            StoreError::Refused(r) => StoreError::Refused(r.clone()),
            StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
            StoreError::Database(e) => StoreError::Database(DieselError::QueryBuilderError(e.to_string().into())),
        }
    }
}

impl From<DieselError> for StoreError {
    fn from(e: DieselError) -> Self {
        match e {
            DieselError::NotFound => StoreError::NotFound("record"),
            // The connection closed under the query (the server restarted):
            // diesel-async says "unable to send", whatever the moment it broke.
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                info,
            ) => StoreError::Unavailable(info.message().to_owned()),
            DieselError::BrokenTransactionManager => StoreError::Unavailable("broken transaction".into()),
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                StoreError::Conflict(format!("already exists ({})", info.constraint_name().unwrap_or("unique")))
            }
            DieselError::DatabaseError(DatabaseErrorKind::Unknown, ref info)
                if info.message().contains("terminating connection")
                    || info.message().contains("the database system is")
                    || info.message().contains("connection") =>
            {
                StoreError::Unavailable(info.message().to_owned())
            }
            other => StoreError::Database(other),
        }
    }
}

impl From<PoolError> for StoreError {
    fn from(e: PoolError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

macro_rules! refused_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Refused(e.into()) }
        }
    )*};
}
refused_from!(StepError, SaleError, CostError, MoneyError);

/// Which rows of a list to read: `limit` rows after the first `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Page {
    pub fn new(limit: i64, offset: i64) -> Self {
        Page { limit, offset }
    }
}

/// One page of a list and how many rows match in all. `scoped` builds the
/// filtered (boxed) query, once to count it and once to read it; `order`
/// orders the read, whose page is then taken and read as `R`. The future is
/// boxed so that callers (the API's handlers) need not prove it `Send` for
/// every query type themselves.
pub fn page<'a, Q, R>(
    conn: &'a mut Conn,
    scoped: impl Fn() -> Q + Send + 'a,
    order: impl FnOnce(Q) -> Q + Send + 'a,
    page: Page,
) -> futures_util::future::BoxFuture<'a, Result<(Vec<R>, i64), StoreError>>
where
    Q: diesel::query_dsl::methods::SelectDsl<diesel::dsl::CountStar>
        + diesel::query_dsl::methods::LimitDsl<Output = Q>
        + diesel::query_dsl::methods::OffsetDsl<Output = Q>
        + diesel::query_dsl::methods::SelectDsl<diesel::dsl::AsSelect<R, diesel::pg::Pg>>
        + Send
        + 'a,
    diesel::dsl::Select<Q, diesel::dsl::CountStar>: diesel_async::methods::LoadQuery<'a, Conn, i64> + Send + 'a,
    diesel::dsl::Select<Q, diesel::dsl::AsSelect<R, diesel::pg::Pg>>:
        diesel_async::methods::LoadQuery<'a, Conn, R> + Send + 'a,
    R: diesel::Selectable<diesel::pg::Pg> + Send + 'a,
    R::SelectExpression: diesel::query_builder::QueryId,
{
    use diesel::SelectableHelper;
    use diesel::query_dsl::methods::SelectDsl;
    use diesel_async::RunQueryDsl;
    use futures_util::FutureExt;
    async move {
        let total = SelectDsl::select(scoped(), diesel::dsl::count_star()).get_result(conn).await?;
        let ordered = order(scoped()).limit(page.limit).offset(page.offset);
        let rows = SelectDsl::select(ordered, R::as_select()).load(conn).await?;
        Ok((rows, total))
    }
    .boxed()
}

/// A database URL with its password filled in from the secret store. Never
/// printed: its Debug shows the URL without the password.
#[derive(Clone)]
pub struct DatabaseUrl {
    url: url::Url,
    password: Option<SecretValue>,
}

impl DatabaseUrl {
    pub fn resolve(settings: &DatabaseSettings, secrets: &dyn SecretStore) -> Result<Self, SecretError> {
        Ok(Self::resolve_versioned(settings, secrets)?.0)
    }

    /// [`DatabaseUrl::resolve`] and the password's version (file backend).
    /// A version made by a rotation with alternating users names its role,
    /// which replaces the URL's user.
    pub fn resolve_versioned(
        settings: &DatabaseSettings,
        secrets: &dyn SecretStore,
    ) -> Result<(Self, Option<crate::secrets::Staged>), SecretError> {
        let mut url = url::Url::parse(&settings.url).map_err(|_| SecretError::InvalidName("database.url".into()))?;
        let Some(name) = &settings.password_secret else { return Ok((DatabaseUrl { url, password: None }, None)) };
        let staged = secrets
            .staged(name)?
            .ok_or_else(|| SecretError::Missing { name: name.clone(), hint: secrets.hint(name) })?;
        if let Some(user) = &staged.user {
            let _ = url.set_username(user);
        }
        Ok((DatabaseUrl { url, password: Some(staged.current.clone()) }, Some(staged)))
    }

    /// This URL with another user and password (a rotation's test connection).
    pub fn with_credentials(&self, user: &str, password: SecretValue) -> DatabaseUrl {
        let mut url = self.url.clone();
        let _ = url.set_username(user);
        DatabaseUrl { url, password: Some(password) }
    }

    /// The user the URL connects as.
    pub fn user(&self) -> &str {
        self.url.username()
    }

    /// From a bare URL with no secret (tests, tools).
    pub fn plain(url: &str) -> Result<Self, url::ParseError> {
        Ok(DatabaseUrl { url: url::Url::parse(url)?, password: None })
    }

    /// The connection string, password included. Hand it only to a connection.
    pub fn expose(&self) -> String {
        let mut u = self.url.clone();
        if let Some(p) = &self.password {
            let _ = u.set_password(Some(p.expose()));
        }
        u.to_string()
    }

    /// The database's name.
    pub fn database(&self) -> &str {
        self.url.path().trim_start_matches('/')
    }

    /// The same server's `postgres` maintenance database.
    pub fn maintenance(&self) -> DatabaseUrl {
        self.with_database("postgres")
    }

    pub fn with_database(&self, name: &str) -> DatabaseUrl {
        let mut url = self.url.clone();
        url.set_path(&format!("/{name}"));
        DatabaseUrl { url, password: self.password.clone() }
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.url)
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.url)
    }
}

/// The pool of connections to one environment's database.
#[derive(Clone)]
pub struct Db {
    pool: Pool<AsyncPgConnection>,
    /// The credentials new connections open with: replaced when the
    /// password secret is rotated ([`Db::set_url`]); open connections stay.
    url: std::sync::Arc<std::sync::RwLock<DatabaseUrl>>,
    connect_timeout: Duration,
}

impl Db {
    /// Builds the pool. Connections open lazily; [`Db::ping`] checks the server.
    pub fn new(url: DatabaseUrl, pool_size: usize, connect_timeout: Duration) -> Result<Db, StoreError> {
        Self::build(std::sync::Arc::new(std::sync::RwLock::new(url)), pool_size, connect_timeout, None)
    }

    /// A pool of its own to the same database, of `size` connections that
    /// each run `session` (`SET` statements) when they open: for a part
    /// whose statements need other session settings than the rest.
    pub fn own_pool(&self, size: usize, session: &'static str) -> Result<Db, StoreError> {
        Self::build(self.url.clone(), size, self.connect_timeout, Some(session))
    }

    fn build(
        url: std::sync::Arc<std::sync::RwLock<DatabaseUrl>>,
        pool_size: usize,
        connect_timeout: Duration,
        session: Option<&'static str>,
    ) -> Result<Db, StoreError> {
        // Recycle without a `SELECT 1` per checkout (the default `Verified`
        // costs a round trip on every API request, twice with the auth guard): a
        // connection that broke fails its first query as `Unavailable` and is
        // dropped by the pool (`is_broken`).
        let mut config = diesel_async::pooled_connection::ManagerConfig::default();
        config.recycling_method = diesel_async::pooled_connection::RecyclingMethod::Fast;
        // Each new connection opens with the credentials of the moment (a
        // rotated password applies to new connections only).
        let credentials = url.clone();
        config.custom_setup = Box::new(move |_| {
            let url = credentials.read().map(|u| u.expose()).unwrap_or_else(|p| p.into_inner().expose());
            Box::pin(async move {
                use diesel_async::{AsyncConnection, SimpleAsyncConnection};
                let mut conn = AsyncPgConnection::establish(&url).await?;
                if let Some(session) = session {
                    conn.batch_execute(session).await.map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                }
                Ok(conn)
            })
        });
        let initial = url.read().map(|u| u.expose()).unwrap_or_else(|p| p.into_inner().expose());
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(initial, config);
        let pool =
            Pool::builder(manager).max_size(pool_size).build().map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Db { pool, url, connect_timeout })
    }

    pub async fn conn(&self) -> Result<PooledConn, StoreError> {
        match tokio::time::timeout(self.connect_timeout, self.pool.get()).await {
            Ok(conn) => Ok(conn?),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no connection to {} within {:?}",
                self.url(),
                self.connect_timeout
            ))),
        }
    }

    /// The URL (with the credentials) new connections open with.
    pub fn url(&self) -> DatabaseUrl {
        self.url.read().map(|u| u.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// New connections (of this pool and its own pools) open with `url` from now on.
    pub fn set_url(&self, url: DatabaseUrl) {
        match self.url.write() {
            Ok(mut g) => *g = url,
            Err(p) => *p.into_inner() = url,
        }
    }

    /// A round trip to the server.
    pub async fn ping(&self) -> Result<(), StoreError> {
        use diesel_async::RunQueryDsl;
        let mut conn = self.conn().await?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await?;
        Ok(())
    }
}
