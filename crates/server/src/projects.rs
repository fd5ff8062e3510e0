//! Projects: a new project's repository (hosted: a bare repository Salve serves; external: a
//! mirror fetched when its webhook calls) and its webhook secret, sealed.

use salve_store::ProjectRow;

use crate::forge;
use crate::server::{Server, WorkError};
use crate::webhook;

/// Creates a project: hosted (a bare repository Salve serves) when `repo_url` is `None`,
/// else external (fetched from `repo_url` when its webhook calls).
pub async fn create(
    server: &Server,
    name: &str,
    repo_url: Option<&str>,
    webhook_secret: Option<&str>,
) -> Result<ProjectRow, WorkError> {
    if !forge::valid_name(name) {
        return Err(WorkError::Invalid(format!(
            "'{name}' is not a valid project name: use 1-100 letters, digits, '.', '_' and '-', starting with a letter or digit"
        )));
    }
    let dir = forge::repo_dir(&server.config.data_dir, name);
    if server.store.project(name).await?.is_some() {
        return Err(WorkError::Conflict(format!("a project named '{name}' exists already")));
    }
    if let Some(url) = repo_url
        && (url.is_empty() || url.starts_with('-') || url.contains(['\n', '\0']))
    {
        return Err(WorkError::Invalid(format!("'{url}' is not a repository URL")));
    }
    let sealed = match webhook_secret {
        Some(s) if s.len() < 8 => {
            return Err(WorkError::Invalid("a webhook secret needs at least 8 characters".into()));
        }
        Some(s) => Some(
            server
                .sealer()
                .seal(
                    &format!("webhook:{name}"),
                    &salve_store::secrets::SecretData { env_vars: vec![("secret".into(), s.into())], files: vec![] },
                )
                .map_err(|e| WorkError::Internal(e.to_string()))?,
        ),
        None => None,
    };
    let dir_for_init = dir.clone();
    tokio::task::spawn_blocking(move || forge::init(&dir_for_init))
        .await
        .map_err(|e| WorkError::Internal(e.to_string()))?
        .map_err(WorkError::Internal)?;
    let row = ProjectRow {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_owned(),
        // A hosted project's repository; an external one keeps its mirror here too.
        repo_url: dir.to_string_lossy().into_owned(),
        created_ms: salve_store::now_ms(),
        kind: if repo_url.is_some() { "external" } else { "hosted" }.into(),
        webhook_secret: sealed,
    };
    server.store.create_project(&row).await?;
    if let Some(url) = repo_url.map(str::to_owned) {
        tokio::task::spawn_blocking(move || webhook::set_upstream(&dir, &url))
            .await
            .map_err(|e| WorkError::Internal(e.to_string()))?
            .map_err(WorkError::Internal)?;
    }
    Ok(row)
}
