use missive_store::{PostgresStore, SqliteStore, Store};

/// A store under test, and a way to open a second handle on the same data, as another
/// process (the CLI) or another replica does.
pub struct Fixture {
    pub store: Box<dyn Store>,
    again: Box<dyn Fn() -> Box<dyn Store>>,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    pub fn open_again(&self) -> Box<dyn Store> {
        (self.again)()
    }
}

pub fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missive.db");
    let store = Box::new(SqliteStore::open(&path).unwrap());
    Fixture {
        store,
        again: Box::new(move || Box::new(SqliteStore::open(&path).unwrap())),
        _dir: Some(dir),
    }
}

/// A fresh database on the test server for each test.
pub fn postgres() -> Fixture {
    let url = fresh_postgres_database(&postgres_server());
    let store = Box::new(PostgresStore::open(&url).unwrap());
    Fixture {
        store,
        again: Box::new(move || Box::new(PostgresStore::open(&url).unwrap())),
        _dir: None,
    }
}

/// The PostgreSQL server the tests create their databases on.
pub fn postgres_server() -> String {
    std::env::var("MISSIVE_TEST_POSTGRES").expect(
        "MISSIVE_TEST_POSTGRES must name a PostgreSQL server the tests may create databases on \
         (scripts/test starts one)",
    )
}

/// Creates an empty database on the server `url` points at; returns its URL.
pub fn fresh_postgres_database(url: &str) -> String {
    let name = format!("contract_{}", uuid::Uuid::new_v4().simple());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
    });
    let mut url: url::Url = url.parse().unwrap();
    url.set_path(&name);
    url.to_string()
}
