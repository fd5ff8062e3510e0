//! The local state `salve run`, `salve logs` and `salve secret` share: the data folder, the
//! database (SQLite in the data folder unless `SALVE_DATABASE_URL` says otherwise) and the
//! secrets key.

use std::path::PathBuf;

use salve_store::Store;
use salve_store::secrets::Sealer;

/// Salve's data folder: `$SALVE_DATA_DIR`, else `$XDG_DATA_HOME/salve`, else `~/.local/share/salve`.
pub fn data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SALVE_DATA_DIR").filter(|d| !d.is_empty()) {
        // Jobs and git need it by an absolute path.
        return std::path::absolute(&d).unwrap_or_else(|_| PathBuf::from(d));
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
        // Multi-thread: the engine's threads store events through the runtime's handle.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
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
