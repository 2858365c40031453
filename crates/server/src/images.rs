//! The VM image catalogue `az vm create` reads (research/az-cli.md §3): the image alias document
//! (`vmImageAliasDoc` of `/metadata/endpoints`, in the shape of Azure's `aliases.json`) and the
//! platform image versions (`.../locations/{l}/publishers/{p}/artifacttypes/vmimage/offers/{o}/skus/{s}/versions`).
//!
//! openmi runs no images: the catalogue only tells clients what an image is (its OS, its
//! generation), which az needs to build its template. The aliases are az 2.91's built-in list
//! plus `UbuntuLTS` (the alias the seeds use, which az dropped: `Canonical:UbuntuServer:18.04-LTS`).
//! Any other publisher/offer/sku answers too, its OS told by the publisher (Microsoft's Windows
//! publishers are Windows, every other is Linux), since no image is ever started.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

/// (OS, alias, publisher, offer, sku, architecture).
const ALIASES: &[(&str, &str, &str, &str, &str, &str)] = &[
    (
        "Linux",
        "AzureLinux4",
        "microsoftazurelinux",
        "azurelinux-4",
        "4",
        "x64",
    ),
    (
        "Linux",
        "CentOS85Gen2",
        "OpenLogic",
        "CentOS",
        "8_5-gen2",
        "x64",
    ),
    (
        "Linux",
        "Debian11",
        "Debian",
        "debian-11",
        "11-backports-gen2",
        "x64",
    ),
    (
        "Linux",
        "FlatcarLinuxFreeGen2",
        "kinvolk",
        "flatcar-container-linux-free",
        "stable-gen2",
        "x64",
    ),
    (
        "Linux",
        "OpenSuseLeap154Gen2",
        "SUSE",
        "openSUSE-leap-15-4",
        "gen2",
        "x64",
    ),
    (
        "Linux",
        "RHELRaw8LVMGen2",
        "RedHat",
        "RHEL",
        "8-lvm-gen2",
        "x64",
    ),
    (
        "Linux",
        "SuseSles15SP3",
        "SUSE",
        "sles-15-sp3",
        "gen2",
        "x64",
    ),
    (
        "Linux",
        "Ubuntu2204",
        "Canonical",
        "0001-com-ubuntu-server-jammy",
        "22_04-lts-gen2",
        "x64",
    ),
    (
        "Linux",
        "Ubuntu2004",
        "Canonical",
        "0001-com-ubuntu-server-focal",
        "20_04-lts-gen2",
        "x64",
    ),
    (
        "Linux",
        "UbuntuLTS",
        "Canonical",
        "UbuntuServer",
        "18.04-LTS",
        "x64",
    ),
    (
        "Windows",
        "Win2022Datacenter",
        "MicrosoftWindowsServer",
        "WindowsServer",
        "2022-datacenter-g2",
        "x64",
    ),
    (
        "Windows",
        "Win2022AzureEditionCore",
        "MicrosoftWindowsServer",
        "WindowsServer",
        "2022-datacenter-azure-edition-core",
        "x64",
    ),
    (
        "Windows",
        "Win2019Datacenter",
        "MicrosoftWindowsServer",
        "WindowsServer",
        "2019-datacenter-gensecond",
        "x64",
    ),
    (
        "Windows",
        "Win2016Datacenter",
        "MicrosoftWindowsServer",
        "WindowsServer",
        "2016-datacenter-gensecond",
        "x64",
    ),
    (
        "Windows",
        "Win2012R2Datacenter",
        "MicrosoftWindowsServer",
        "WindowsServer",
        "2012-R2-Datacenter",
        "x64",
    ),
    (
        "Windows",
        "Win2012Datacenter",
        "MicrosoftWindowsServer",
        "WindowsServer",
        "2012-Datacenter",
        "x64",
    ),
];

/// The one version every image has here.
pub const IMAGE_VERSION: &str = "1.0.0";

/// `GET /openmi/vm-image-aliases.json`: the alias document, as Azure's `aliases.json`.
pub async fn alias_document() -> Response {
    let mut by_os: Map<String, Value> = Map::new();
    for (os, alias, publisher, offer, sku, architecture) in ALIASES {
        let entry = by_os
            .entry(os.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(entry) = entry.as_object_mut() {
            entry.insert(
                alias.to_string(),
                json!({"publisher": publisher, "offer": offer, "sku": sku, "version": "latest", "architecture": architecture}),
            );
        }
    }
    Json(json!({
        "$schema": "http://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json",
        "contentVersion": "1.0.0.0",
        "parameters": {},
        "variables": {},
        "resources": [],
        "outputs": {"aliases": {"type": "object", "value": by_os}},
    }))
    .into_response()
}

/// The OS of an image: the catalogue's, else told by the publisher.
fn operating_system(publisher: &str, offer: &str, sku: &str) -> &'static str {
    let known = ALIASES.iter().find(|(_, _, p, o, s, _)| {
        p.eq_ignore_ascii_case(publisher)
            && o.eq_ignore_ascii_case(offer)
            && s.eq_ignore_ascii_case(sku)
    });
    match known {
        Some(("Windows", ..)) => "Windows",
        Some(_) => "Linux",
        None => {
            let windows_publishers = [
                "MicrosoftWindowsServer",
                "MicrosoftWindowsDesktop",
                "MicrosoftSQLServer",
                "MicrosoftVisualStudio",
            ];
            if windows_publishers
                .iter()
                .any(|p| p.eq_ignore_ascii_case(publisher))
            {
                "Windows"
            } else {
                "Linux"
            }
        }
    }
}

fn generation(sku: &str) -> &'static str {
    let sku = sku.to_lowercase();
    if sku.contains("gen2") || sku.ends_with("-g2") || sku.contains("gensecond") {
        "V2"
    } else {
        "V1"
    }
}

/// The image version routes: `segments` are the lower-cased path after the subscription id
/// (`providers/microsoft.compute/locations/{l}/publishers/{p}/artifacttypes/vmimage/offers/{o}/skus/{s}/versions[/{v}]`),
/// `original` the same as sent. `None` when the path is not an image path.
pub fn route(
    subscription: &str,
    segments: &[&str],
    original: &[&str],
    top: Option<usize>,
) -> Option<Response> {
    let tail = segments.get(2..)?;
    let is_image_path = tail.len() >= 12
        && tail[0] == "providers"
        && tail[1] == "microsoft.compute"
        && tail[2] == "locations"
        && tail[4] == "publishers"
        && tail[6] == "artifacttypes"
        && tail[7] == "vmimage"
        && tail[8] == "offers"
        && tail[10] == "skus"
        && tail.get(12) == Some(&"versions");
    if !is_image_path {
        return None;
    }
    let original = original.get(2..)?;
    let (location, publisher, offer, sku) = (original[3], original[5], original[9], original[11]);
    let base = format!(
        "/Subscriptions/{subscription}/Providers/Microsoft.Compute/Locations/{location}/Publishers/{publisher}/ArtifactTypes/VMImage/Offers/{offer}/Skus/{sku}/Versions"
    );
    match original.get(13) {
        None => {
            let mut versions = vec![json!({"name": IMAGE_VERSION, "location": location, "id": format!("{base}/{IMAGE_VERSION}")})];
            if top == Some(0) {
                versions.clear();
            }
            Some(Json(Value::Array(versions)).into_response())
        }
        Some(version) if *version == IMAGE_VERSION || version.eq_ignore_ascii_case("latest") => Some(
            Json(json!({
                "name": IMAGE_VERSION,
                "location": location,
                "id": format!("{base}/{IMAGE_VERSION}"),
                "properties": {
                    "hyperVGeneration": generation(sku),
                    "architecture": "x64",
                    "replicaType": "Managed",
                    "osDiskImage": {"operatingSystem": operating_system(publisher, offer, sku), "sizeInGb": 30},
                    "dataDiskImages": [],
                    "disallowed": {"vmDiskType": "None"},
                    "features": [],
                    "imageDeprecationStatus": {"imageState": "Active"},
                },
            }))
            .into_response(),
        ),
        Some(version) => Some(
            crate::error::ArmError::new(
                StatusCode::NOT_FOUND,
                "ImageVersionNotFound",
                format!("Artifact: VMImage was not found: version '{version}' of {publisher}:{offer}:{sku}. The only version is {IMAGE_VERSION}."),
            )
            .into_response(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operating_systems_and_generations() {
        assert_eq!(
            operating_system(
                "MicrosoftWindowsServer",
                "WindowsServer",
                "2016-datacenter-gensecond"
            ),
            "Windows"
        );
        assert_eq!(
            operating_system("Canonical", "UbuntuServer", "18.04-LTS"),
            "Linux"
        );
        assert_eq!(
            operating_system("MicrosoftWindowsServer", "WindowsServer", "2016-Datacenter"),
            "Windows"
        );
        assert_eq!(operating_system("someone", "thing", "1"), "Linux");
        assert_eq!(generation("22_04-lts-gen2"), "V2");
        assert_eq!(generation("2022-datacenter-g2"), "V2");
        assert_eq!(generation("18.04-LTS"), "V1");
    }
}
