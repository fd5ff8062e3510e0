//! The local state `salve run`, `salve logs` and `salve secret` share: the data folder, the
//! database (SQLite in the data folder unless `SALVE_DATABASE_URL` says otherwise) and the
//! secrets key.

use std::path::PathBuf;

use salve_engine::{Secret, Secrets};
use salve_store::Store;
use salve_store::secrets::Sealer;

/// Salve's data folder: `$SALVE_DATA_DIR`, else `$XDG_DATA_HOME/salve`, else `~/.local/share/salve`.
pub fn data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SALVE_DATA_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("salve");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".local/share/salve")
}

pub struct State {
    pub rt: tokio::runtime::Runtime,
    pub store: Store,
    pub data: PathBuf,
}

impl State {
    pub fn open() -> Result<State, String> {
        let data = data_dir();
        let url = std::env::var("SALVE_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| format!("sqlite://{}", data.join("salve.db").display()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        let store = rt.block_on(Store::open(&url)).map_err(|e| format!("cannot open the database: {e}"))?;
        Ok(State { rt, store, data })
    }

    pub fn sealer(&self) -> Result<Sealer, String> {
        Sealer::open_or_create(&self.data.join("secrets.key")).map_err(|e| e.to_string())
    }
}

/// Secrets for the engine, read from the store and opened with the key.
pub struct StoredSecrets<'a> {
    pub state: &'a State,
    pub sealer: Sealer,
}

impl Secrets for StoredSecrets<'_> {
    fn get(&self, name: &str) -> Result<Option<Secret>, String> {
        let Some(sealed) = self.state.rt.block_on(self.state.store.secret(name)).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let data = self.sealer.open(name, &sealed).map_err(|e| e.to_string())?;
        Ok(Some(Secret { env_vars: data.env_vars, files: data.files }))
    }
}
