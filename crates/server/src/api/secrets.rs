//! `/secrets`: secret names (never values), creating, replacing and deleting secrets, sealed
//! with the server's key.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use salve_contract::api;
use salve_store::secrets::SecretData;

use crate::http::{ApiError, ApiResult, S, internal, json_body};

pub async fn list(State(server): S) -> ApiResult<api::SecretList> {
    Ok(Json(api::SecretList { secrets: server.store.secret_names().await? }))
}

pub async fn put(
    State(server): S,
    body: Result<Json<api::NewSecret>, JsonRejection>,
) -> Result<(StatusCode, Json<api::SecretSaved>), ApiError> {
    use base64::Engine as _;
    let req = json_body(body)?;
    if !salve_contract::valid_secret_name(&req.name) {
        return Err(ApiError::bad(format!(
            "'{}' is not a valid secret name: 1 to 128 characters, no '/', no control characters, no spaces at either end",
            req.name
        )));
    }
    let mut data = SecretData::default();
    for v in req.env_vars {
        if !salve_runner::script::valid_name(&v.name) {
            return Err(ApiError::bad(format!("'{}' is not a valid variable name", v.name)));
        }
        data.env_vars.push((v.name, v.value));
    }
    for f in req.files {
        let content = base64::engine::general_purpose::STANDARD
            .decode(&f.content)
            .map_err(|e| ApiError::bad(format!("the content of {} is not base64: {e}", f.path)))?;
        data.files.push((f.path, content));
    }
    let sealed = server.sealer().seal(&req.name, &data).map_err(internal)?;
    server.store.put_secret(&req.name, &sealed).await?;
    Ok((StatusCode::CREATED, Json(api::SecretSaved { name: req.name })))
}

pub async fn delete(State(server): S, Path(name): Path<String>) -> ApiResult<api::Deleted> {
    if server.store.delete_secret(&name).await? {
        Ok(Json(api::Deleted { deleted: name }))
    } else {
        Err(ApiError::not_found(format!("no secret '{name}'")))
    }
}
