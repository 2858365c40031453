//! The Microsoft.Network provider: virtual networks with their subnets, network security groups,
//! public IP addresses and network interfaces, with the fields Azure computes and the `az vm
//! create` read-back needs (research/az-cli.md §3): ids of inline children, a public IP's
//! `ipAddress`, a NIC's private IP from its subnet and its MAC address.
//!
//! Nothing here moves packets: these are the control-plane records of networks that do not
//! exist, kept as ARM keeps them. A NIC must name a subnet of an existing virtual network (and
//! existing public IP and NSG), as ARM requires (`InvalidResourceReference`).

use std::net::Ipv4Addr;

use openmi_model::arm::resource_key;
use serde_json::{json, Map, Value};

use crate::{Engine, EngineError};

pub const VIRTUAL_NETWORK_TYPE: &str = "Microsoft.Network/virtualNetworks";
pub const NETWORK_SECURITY_GROUP_TYPE: &str = "Microsoft.Network/networkSecurityGroups";
pub const PUBLIC_IP_TYPE: &str = "Microsoft.Network/publicIPAddresses";
pub const NETWORK_INTERFACE_TYPE: &str = "Microsoft.Network/networkInterfaces";

/// Which network type a type name is, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NetworkType {
    VirtualNetwork,
    SecurityGroup,
    PublicIp,
    Interface,
}

impl NetworkType {
    pub(crate) fn of(type_name: &str) -> Option<NetworkType> {
        [
            (VIRTUAL_NETWORK_TYPE, NetworkType::VirtualNetwork),
            (NETWORK_SECURITY_GROUP_TYPE, NetworkType::SecurityGroup),
            (PUBLIC_IP_TYPE, NetworkType::PublicIp),
            (NETWORK_INTERFACE_TYPE, NetworkType::Interface),
        ]
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(type_name))
        .map(|(_, kind)| kind)
    }
}

fn invalid_reference(id: &str, what: &str) -> EngineError {
    EngineError::InvalidResourceReference(format!(
        "Resource {id} referenced by resource {what} was not found. Please make sure that the referenced resource exists, and that both resources are in the same region."
    ))
}

/// `W/"<guid>"`, the weak etag Azure puts on network resources and their children.
fn etag() -> Value {
    json!(format!("W/\"{}\"", uuid::Uuid::new_v4()))
}

/// A previous value at `pointer`, or a new one.
fn kept(previous: Option<&Value>, pointer: &str, new: impl FnOnce() -> Value) -> Value {
    previous
        .and_then(|previous| previous.pointer(pointer))
        .filter(|value| !value.is_null())
        .cloned()
        .unwrap_or_else(new)
}

/// Gives each element of `properties[array]` the id `{parent}/{segment}/{name}`, its type and a
/// provisioning state, as Azure returns inline children (subnets, security rules, ip configs).
fn name_children(
    properties: &mut Map<String, Value>,
    array: &str,
    parent_id: &str,
    segment: &str,
    child_type: &str,
) -> Result<(), EngineError> {
    let Some(children) = properties.get_mut(array) else {
        properties.insert(array.into(), json!([]));
        return Ok(());
    };
    let Some(children) = children.as_array_mut() else {
        return Err(EngineError::InvalidRequestContent(format!(
            "The '{array}' property must be an array."
        )));
    };
    for child in children.iter_mut() {
        let Some(object) = child.as_object_mut() else {
            return Err(EngineError::InvalidRequestContent(format!(
                "Each element of '{array}' must be an object."
            )));
        };
        let name = object
            .get("name")
            .and_then(Value::as_str)
            .filter(|name| !name.is_empty())
            .ok_or_else(|| {
                EngineError::InvalidRequestContent(format!(
                    "Each element of '{array}' needs a name."
                ))
            })?
            .to_string();
        object.insert("id".into(), json!(format!("{parent_id}/{segment}/{name}")));
        object.insert("type".into(), json!(child_type));
        object.entry("etag").or_insert_with(etag);
        let child_properties = object.entry("properties").or_insert_with(|| json!({}));
        if let Some(child_properties) = child_properties.as_object_mut() {
            child_properties.insert("provisioningState".into(), json!("Succeeded"));
        }
    }
    Ok(())
}

/// Azure's six default rules of every network security group.
fn default_security_rules(nsg_id: &str) -> Value {
    let rules = [
        (
            "AllowVnetInBound",
            "Allow inbound traffic from all VMs in VNET",
            "VirtualNetwork",
            "VirtualNetwork",
            "Allow",
            65000,
            "Inbound",
        ),
        (
            "AllowAzureLoadBalancerInBound",
            "Allow inbound traffic from azure load balancer",
            "AzureLoadBalancer",
            "*",
            "Allow",
            65001,
            "Inbound",
        ),
        (
            "DenyAllInBound",
            "Deny all inbound traffic",
            "*",
            "*",
            "Deny",
            65500,
            "Inbound",
        ),
        (
            "AllowVnetOutBound",
            "Allow outbound traffic from all VMs to all VMs in VNET",
            "VirtualNetwork",
            "VirtualNetwork",
            "Allow",
            65000,
            "Outbound",
        ),
        (
            "AllowInternetOutBound",
            "Allow outbound traffic from all VMs to Internet",
            "*",
            "Internet",
            "Allow",
            65001,
            "Outbound",
        ),
        (
            "DenyAllOutBound",
            "Deny all outbound traffic",
            "*",
            "*",
            "Deny",
            65500,
            "Outbound",
        ),
    ];
    Value::Array(
        rules
            .iter()
            .map(|(name, description, source, destination, access, priority, direction)| {
                json!({
                    "name": name,
                    "id": format!("{nsg_id}/defaultSecurityRules/{name}"),
                    "type": "Microsoft.Network/networkSecurityGroups/defaultSecurityRules",
                    "properties": {
                        "provisioningState": "Succeeded", "description": description, "protocol": "*",
                        "sourcePortRange": "*", "destinationPortRange": "*",
                        "sourceAddressPrefix": source, "destinationAddressPrefix": destination,
                        "access": access, "priority": priority, "direction": direction,
                    },
                })
            })
            .collect(),
    )
}

/// `10.0.0.0/24` as (network, prefix length).
fn parse_prefix(prefix: &str) -> Option<(u32, u32)> {
    let (address, length) = prefix.split_once('/')?;
    let address: Ipv4Addr = address.trim().parse().ok()?;
    let length: u32 = length.trim().parse().ok().filter(|length| *length <= 32)?;
    let mask = if length == 0 {
        0
    } else {
        u32::MAX << (32 - length)
    };
    Some((u32::from(address) & mask, length))
}

/// The lowest free address of a subnet. Azure keeps the first four and the last address of
/// every subnet for itself, so the first NIC gets `.4`.
fn first_free_address(prefix: &str, used: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    let (network, length) = parse_prefix(prefix)?;
    let size = 1u64 << (32 - length);
    (4..size.saturating_sub(1))
        .map(|offset| Ipv4Addr::from(network.wrapping_add(offset as u32)))
        .find(|candidate| !used.contains(candidate))
}

/// A MAC address in Azure's form (`00-0D-3A-12-34-56`; 00-0D-3A is one of Microsoft's prefixes).
fn new_mac_address() -> String {
    let bytes = uuid::Uuid::new_v4();
    let bytes = bytes.as_bytes();
    format!(
        "00-0D-3A-{:02X}-{:02X}-{:02X}",
        bytes[0], bytes[1], bytes[2]
    )
}

/// A public address for a public IP resource, from 20.0.0.0/8 (addresses are never routed).
fn new_public_address() -> String {
    let bytes = uuid::Uuid::new_v4();
    let bytes = bytes.as_bytes();
    format!("20.{}.{}.{}", bytes[0], bytes[1], bytes[2].max(1))
}

fn id_of(value: Option<&Value>) -> Option<String> {
    value
        .and_then(|value| value.get("id"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

impl Engine {
    /// Fills in what Azure computes for a network resource of `kind`; `properties` is the
    /// document's `properties` object as the request gave it.
    pub(crate) async fn network_properties(
        &self,
        kind: NetworkType,
        id: &str,
        location: Option<&str>,
        properties: &mut Map<String, Value>,
        previous: Option<&Value>,
    ) -> Result<(), EngineError> {
        properties.insert(
            "resourceGuid".into(),
            kept(previous, "/properties/resourceGuid", || {
                json!(uuid::Uuid::new_v4().to_string())
            }),
        );
        match kind {
            NetworkType::VirtualNetwork => {
                name_children(
                    properties,
                    "subnets",
                    id,
                    "subnets",
                    "Microsoft.Network/virtualNetworks/subnets",
                )?;
            }
            NetworkType::SecurityGroup => {
                name_children(
                    properties,
                    "securityRules",
                    id,
                    "securityRules",
                    "Microsoft.Network/networkSecurityGroups/securityRules",
                )?;
                properties.insert("defaultSecurityRules".into(), default_security_rules(id));
            }
            NetworkType::PublicIp => {
                properties.insert(
                    "ipAddress".into(),
                    kept(previous, "/properties/ipAddress", || {
                        json!(new_public_address())
                    }),
                );
                properties
                    .entry("publicIPAllocationMethod")
                    .or_insert_with(|| json!("Dynamic"));
                properties
                    .entry("publicIPAddressVersion")
                    .or_insert_with(|| json!("IPv4"));
                properties
                    .entry("idleTimeoutInMinutes")
                    .or_insert_with(|| json!(4));
                if let Some(dns) = properties
                    .get_mut("dnsSettings")
                    .and_then(Value::as_object_mut)
                {
                    if let (Some(label), Some(location)) =
                        (dns.get("domainNameLabel").and_then(Value::as_str), location)
                    {
                        let fqdn = format!("{label}.{location}.cloudapp.azure.com");
                        dns.insert("fqdn".into(), json!(fqdn));
                    }
                }
            }
            NetworkType::Interface => {
                self.interface_properties(id, properties, previous).await?;
            }
        }
        properties.insert("provisioningState".into(), json!("Succeeded"));
        Ok(())
    }

    /// A NIC: each ip configuration's subnet must exist; it gets a private address from that
    /// subnet (kept across updates) and the NIC a MAC address.
    async fn interface_properties(
        &self,
        id: &str,
        properties: &mut Map<String, Value>,
        previous: Option<&Value>,
    ) -> Result<(), EngineError> {
        if let Some(nsg) = id_of(properties.get("networkSecurityGroup")) {
            self.referenced(&nsg, id).await?;
        }
        name_children(
            properties,
            "ipConfigurations",
            id,
            "ipConfigurations",
            "Microsoft.Network/networkInterfaces/ipConfigurations",
        )?;
        let previous_addresses: Vec<(String, String)> = previous
            .and_then(|previous| previous.pointer("/properties/ipConfigurations"))
            .and_then(Value::as_array)
            .map(|configs| {
                configs
                    .iter()
                    .filter_map(|config| {
                        Some((
                            config.get("name")?.as_str()?.to_string(),
                            config
                                .pointer("/properties/privateIPAddress")?
                                .as_str()?
                                .to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let configs = properties
            .get_mut("ipConfigurations")
            .and_then(Value::as_array_mut)
            .map(std::mem::take)
            .unwrap_or_default();
        if configs.is_empty() {
            return Err(EngineError::InvalidRequestContent(
                "A network interface needs at least one ip configuration.".to_string(),
            ));
        }
        let mut done = Vec::with_capacity(configs.len());
        for (index, mut config) in configs.into_iter().enumerate() {
            let name = config
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let config_properties = config
                .get_mut("properties")
                .and_then(Value::as_object_mut)
                .ok_or_else(|| {
                    EngineError::InvalidRequestContent(
                        "An ip configuration needs properties.".to_string(),
                    )
                })?;
            if let Some(public_ip) = id_of(config_properties.get("publicIPAddress")) {
                self.referenced(&public_ip, id).await?;
            }
            let subnet_id = id_of(config_properties.get("subnet")).ok_or_else(|| {
                EngineError::InvalidRequestContent(format!(
                    "The ip configuration '{name}' of {id} names no subnet."
                ))
            })?;
            let prefix = self.subnet_prefix(&subnet_id, id).await?;
            let requested_static = config_properties
                .get("privateIPAllocationMethod")
                .and_then(Value::as_str)
                .is_some_and(|method| method.eq_ignore_ascii_case("Static"));
            let given = config_properties
                .get("privateIPAddress")
                .and_then(Value::as_str)
                .map(str::to_string);
            let address = match (requested_static, given) {
                (true, Some(address)) => address,
                _ => match previous_addresses.iter().find(|(old, _)| *old == name) {
                    Some((_, address)) => address.clone(),
                    None => {
                        let mut used = self.addresses_in_subnet(&subnet_id, id).await?;
                        used.extend(done.iter().filter_map(|config: &Value| {
                            config
                                .pointer("/properties/privateIPAddress")?
                                .as_str()?
                                .parse::<Ipv4Addr>()
                                .ok()
                        }));
                        first_free_address(&prefix, &used)
                            .ok_or_else(|| {
                                EngineError::InvalidRequestContent(format!(
                                    "Subnet {subnet_id} with address prefix {prefix} has no free address."
                                ))
                            })?
                            .to_string()
                    }
                },
            };
            config_properties.insert("privateIPAddress".into(), json!(address));
            config_properties
                .entry("privateIPAllocationMethod")
                .or_insert_with(|| json!("Dynamic"));
            config_properties
                .entry("privateIPAddressVersion")
                .or_insert_with(|| json!("IPv4"));
            config_properties
                .entry("primary")
                .or_insert_with(|| json!(index == 0));
            done.push(config);
        }
        properties.insert("ipConfigurations".into(), Value::Array(done));
        properties.insert(
            "macAddress".into(),
            kept(previous, "/properties/macAddress", || {
                json!(new_mac_address())
            }),
        );
        properties
            .entry("enableAcceleratedNetworking")
            .or_insert_with(|| json!(false));
        properties
            .entry("enableIPForwarding")
            .or_insert_with(|| json!(false));
        properties.insert("primary".into(), json!(true));
        Ok(())
    }

    /// The stored document of a resource another one references.
    async fn referenced(&self, id: &str, by: &str) -> Result<Value, EngineError> {
        let record = self
            .store()
            .resource(&resource_key(id))
            .await?
            .ok_or_else(|| invalid_reference(id, by))?;
        Self::parse_document(&record)
    }

    /// The address prefix of `{vnet id}/subnets/{name}`.
    async fn subnet_prefix(&self, subnet_id: &str, by: &str) -> Result<String, EngineError> {
        let (vnet_id, subnet_name) = subnet_id
            .rsplit_once("/subnets/")
            .ok_or_else(|| invalid_reference(subnet_id, by))?;
        let vnet = self.referenced(vnet_id, by).await?;
        let inline = vnet
            .pointer("/properties/subnets")
            .and_then(Value::as_array)
            .and_then(|subnets| {
                subnets.iter().find(|subnet| {
                    subnet
                        .get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|name| name.eq_ignore_ascii_case(subnet_name))
                })
            })
            .cloned();
        // A subnet may also have been written on its own (`PUT .../virtualNetworks/v/subnets/s`).
        let subnet = match inline {
            Some(subnet) => subnet,
            None => self.referenced(subnet_id, by).await?,
        };
        subnet
            .pointer("/properties/addressPrefix")
            .and_then(Value::as_str)
            .or_else(|| {
                subnet
                    .pointer("/properties/addressPrefixes/0")
                    .and_then(Value::as_str)
            })
            .map(str::to_string)
            .ok_or_else(|| {
                EngineError::InvalidRequestContent(format!(
                    "Subnet {subnet_id} has no address prefix."
                ))
            })
    }

    /// Private addresses other NICs hold in `subnet_id`.
    async fn addresses_in_subnet(
        &self,
        subnet_id: &str,
        except_nic: &str,
    ) -> Result<Vec<Ipv4Addr>, EngineError> {
        let subnet_key = resource_key(subnet_id);
        let except_key = resource_key(except_nic);
        let nics = self
            .store()
            .resources_of_type(
                &self.inner.subscription_id,
                &NETWORK_INTERFACE_TYPE.to_lowercase(),
            )
            .await?;
        let mut used = Vec::new();
        for record in nics.iter().filter(|record| record.key != except_key) {
            let document = Self::parse_document(record)?;
            for config in document
                .pointer("/properties/ipConfigurations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let same_subnet = id_of(config.pointer("/properties/subnet"))
                    .is_some_and(|subnet| resource_key(&subnet) == subnet_key);
                if let (true, Some(address)) = (
                    same_subnet,
                    config
                        .pointer("/properties/privateIPAddress")
                        .and_then(Value::as_str)
                        .and_then(|address| address.parse::<Ipv4Addr>().ok()),
                ) {
                    used.push(address);
                }
            }
        }
        Ok(used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_start_after_azures_reserved_four() {
        assert_eq!(
            first_free_address("10.0.0.0/24", &[]),
            Some(Ipv4Addr::new(10, 0, 0, 4))
        );
        assert_eq!(
            first_free_address("10.0.0.0/24", &[Ipv4Addr::new(10, 0, 0, 4)]),
            Some(Ipv4Addr::new(10, 0, 0, 5))
        );
        // A /29 has eight addresses: .0-.3 and .7 are Azure's, so three remain.
        let used = [
            Ipv4Addr::new(10, 1, 0, 4),
            Ipv4Addr::new(10, 1, 0, 5),
            Ipv4Addr::new(10, 1, 0, 6),
        ];
        assert_eq!(first_free_address("10.1.0.0/29", &used), None);
        assert_eq!(first_free_address("not a prefix", &[]), None);
        assert_eq!(
            first_free_address("10.0.1.17/24", &[]),
            Some(Ipv4Addr::new(10, 0, 1, 4))
        );
    }

    #[test]
    fn inline_children_get_ids_and_types() {
        let mut properties =
            json!({"subnets": [{"name": "s1", "properties": {"addressPrefix": "10.0.0.0/24"}}]});
        let map = properties.as_object_mut().unwrap();
        name_children(map, "subnets", "/v", "subnets", "T").unwrap();
        assert_eq!(properties["subnets"][0]["id"], "/v/subnets/s1");
        assert_eq!(properties["subnets"][0]["type"], "T");
        assert_eq!(
            properties["subnets"][0]["properties"]["provisioningState"],
            "Succeeded"
        );
        let mut nameless = json!({"subnets": [{"properties": {}}]});
        assert!(name_children(
            nameless.as_object_mut().unwrap(),
            "subnets",
            "/v",
            "subnets",
            "T"
        )
        .is_err());
    }

    #[test]
    fn mac_addresses_have_azures_form() {
        let mac = new_mac_address();
        assert_eq!(mac.len(), 17);
        assert!(mac.starts_with("00-0D-3A-"));
    }
}
