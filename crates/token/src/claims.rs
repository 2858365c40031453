//! The claims of an access token, named and typed as Entra issues them.
//!
//! See `shared/research/protocols.md` §3.1 and Microsoft's access-token claims reference. v1 tokens
//! carry `appid`/`appidacr` and `unique_name`; v2 tokens carry `azp`/`azpacr` and `preferred_username`.

use serde::Serialize;

/// Claims of an access token. Optional claims are left out of the JSON when `None`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AccessTokenClaims {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appidacr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azpacr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idp: Option<String>,
    pub idtyp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub oid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scp: Option<String>,
    pub sub: String,
    pub tid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unique_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
    pub uti: String,
    pub ver: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xms_mirid: Option<String>,
}
