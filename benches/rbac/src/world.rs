//! A deterministic, realistic tenant: one subscription, its resource groups and resources, the
//! principals, their role assignments, and the decisions to time.
//!
//! Shape (the same at every size, only principals and assignments scale):
//! - 1 subscription, 1 000 resource groups, 100 000 resources: 40 % VMs, 40 % NICs, 20 %
//!   user-assigned identities, spread over the groups with a skew (the biggest group holds about
//!   3 % of all resources, the median about 0.05 %).
//! - principals = assignments / 10, capped at 100 000; 1 % of them are automation service
//!   principals that together hold 10 % of the assignments (about 100 each), the rest about 9.
//! - assignments: 60 % at a resource, 39.9 % at a resource group, 0.1 % at the subscription; the
//!   eight built-in roles weighted Reader 30, Contributor 20, Virtual Machine Contributor 12,
//!   Managed Identity Operator 12, Managed Identity Contributor 8, Owner 8, User Access
//!   Administrator 5, RBAC Administrator 5; 10 % of scopes written in lower case.
//! - decisions: 45 % for the principal of a random assignment at a scope on or near that
//!   assignment's path (below it, or one level above it), 50 % for a random principal on a random
//!   scope, 5 % for a principal with no assignment at all. Actions are read/write/delete of the
//!   target's type, `assign/action` on identities, and role-assignment read/write/delete.

use openmi_model::ObjectId;
use openmi_rbac::{builtin, Assignment};
use uuid::Uuid;

/// xorshift64*: tiny, deterministic, good enough to draw a workload.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut rng = Rng((seed ^ 0x9E37_79B9_7F4A_7C15) | 1);
        for _ in 0..8 {
            rng.next();
        }
        rng
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next() as u128 * n as u128) >> 64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn pick<T: Copy>(&mut self, weighted: &[(T, u32)]) -> T {
        let total: u32 = weighted.iter().map(|(_, weight)| weight).sum();
        let mut draw = self.below(total as usize) as u32;
        for (item, weight) in weighted {
            if draw < *weight {
                return *item;
            }
            draw -= weight;
        }
        weighted[weighted.len() - 1].0
    }

    pub fn guid(&mut self) -> Uuid {
        let bytes = ((self.next() as u128) << 64 | self.next() as u128).to_le_bytes();
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

pub const GROUPS: usize = 1_000;
pub const RESOURCES: usize = 100_000;
pub const PRINCIPAL_CAP: usize = 100_000;
pub const ASSIGNMENTS_PER_PRINCIPAL: usize = 10;
const HEAVY_PRINCIPAL_SHARE: f64 = 0.01;
const HEAVY_ASSIGNMENT_SHARE: f64 = 0.10;
const SUBSCRIPTION_SCOPE_SHARE: f64 = 0.001;
const GROUP_SCOPE_SHARE: f64 = 0.399;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Vm,
    Nic,
    Identity,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Vm => "Microsoft.Compute/virtualMachines",
            Kind::Nic => "Microsoft.Network/networkInterfaces",
            Kind::Identity => "Microsoft.ManagedIdentity/userAssignedIdentities",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Kind::Vm => "vm",
            Kind::Nic => "nic",
            Kind::Identity => "id",
        }
    }
}

pub struct Resource {
    pub id: String,
    pub group: u32,
    pub kind: Kind,
}

/// A scope of the tree.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    Subscription,
    Group(u32),
    Resource(u32),
}

pub mod action {
    pub const VM_READ: &str = "Microsoft.Compute/virtualMachines/read";
    pub const VM_WRITE: &str = "Microsoft.Compute/virtualMachines/write";
    pub const VM_DELETE: &str = "Microsoft.Compute/virtualMachines/delete";
    pub const NIC_READ: &str = "Microsoft.Network/networkInterfaces/read";
    pub const NIC_WRITE: &str = "Microsoft.Network/networkInterfaces/write";
    pub const NIC_DELETE: &str = "Microsoft.Network/networkInterfaces/delete";
    pub const ID_READ: &str = "Microsoft.ManagedIdentity/userAssignedIdentities/read";
    pub const ID_WRITE: &str = "Microsoft.ManagedIdentity/userAssignedIdentities/write";
    pub const ID_DELETE: &str = "Microsoft.ManagedIdentity/userAssignedIdentities/delete";
    pub const ID_ASSIGN: &str = "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action";
    pub const RA_READ: &str = "Microsoft.Authorization/roleAssignments/read";
    pub const RA_WRITE: &str = "Microsoft.Authorization/roleAssignments/write";
    pub const RA_DELETE: &str = "Microsoft.Authorization/roleAssignments/delete";
    pub const RG_READ: &str = "Microsoft.Resources/subscriptions/resourceGroups/read";
    pub const RG_WRITE: &str = "Microsoft.Resources/subscriptions/resourceGroups/write";
    pub const RG_DELETE: &str = "Microsoft.Resources/subscriptions/resourceGroups/delete";
    pub const SUB_READ: &str = "Microsoft.Resources/subscriptions/read";

    /// Every action the workload uses: the finite universe Cedar's action groups are built over.
    pub const ALL: [&str; 17] = [
        VM_READ, VM_WRITE, VM_DELETE, NIC_READ, NIC_WRITE, NIC_DELETE, ID_READ, ID_WRITE,
        ID_DELETE, ID_ASSIGN, RA_READ, RA_WRITE, RA_DELETE, RG_READ, RG_WRITE, RG_DELETE, SUB_READ,
    ];
}

/// One decision as a caller would ask it: the scope as written in the request URL.
pub struct Decision {
    pub principal: ObjectId,
    pub action: &'static str,
    pub scope: String,
}

pub struct World {
    pub subscription: String,
    pub groups: Vec<String>,
    pub group_resources: Vec<Vec<u32>>,
    pub resources: Vec<Resource>,
    pub principals: Vec<ObjectId>,
    pub heavy_principals: usize,
    pub assignments: Vec<Assignment>,
    /// Per assignment: the principal's index and the scope.
    pub placed: Vec<(u32, Target)>,
}

pub fn principals_for(assignments: usize) -> usize {
    (assignments / ASSIGNMENTS_PER_PRINCIPAL).clamp(1, PRINCIPAL_CAP)
}

const ROLE_WEIGHTS: [(&str, u32); 8] = [
    (builtin::READER, 30),
    (builtin::CONTRIBUTOR, 20),
    (builtin::VIRTUAL_MACHINE_CONTRIBUTOR, 12),
    (builtin::MANAGED_IDENTITY_OPERATOR, 12),
    (builtin::MANAGED_IDENTITY_CONTRIBUTOR, 8),
    (builtin::OWNER, 8),
    (builtin::USER_ACCESS_ADMINISTRATOR, 5),
    (builtin::RBAC_ADMINISTRATOR, 5),
];

impl World {
    /// The tree is the same for every size; principals and assignments depend on `size`.
    pub fn generate(size: usize) -> World {
        let mut rng = Rng::new(0x7EE_5EED);
        let subscription = format!("/subscriptions/{}", rng.guid());
        let groups: Vec<String> = (0..GROUPS)
            .map(|group| format!("{subscription}/resourceGroups/rg-app{group:04}"))
            .collect();
        let mut group_resources = vec![Vec::new(); GROUPS];
        let resources: Vec<Resource> = (0..RESOURCES)
            .map(|index| {
                // u² skews towards low group numbers: a few big groups, a long tail of small ones.
                let u = rng.unit();
                let group = ((u * u) * GROUPS as f64) as usize;
                let kind = rng.pick(&[(Kind::Vm, 40), (Kind::Nic, 40), (Kind::Identity, 20)]);
                group_resources[group].push(index as u32);
                Resource {
                    id: format!(
                        "{}/providers/{}/{}-{index:06}",
                        groups[group],
                        kind.path(),
                        kind.prefix()
                    ),
                    group: group as u32,
                    kind,
                }
            })
            .collect();

        let mut rng = Rng::new(size as u64);
        let principal_count = principals_for(size);
        let principals: Vec<ObjectId> = (0..principal_count)
            .map(|_| ObjectId::from_uuid(rng.guid()))
            .collect();
        let heavy_principals = ((principal_count as f64 * HEAVY_PRINCIPAL_SHARE) as usize).max(1);
        let mut world = World {
            subscription,
            groups,
            group_resources,
            resources,
            principals,
            heavy_principals,
            assignments: Vec::with_capacity(size),
            placed: Vec::with_capacity(size),
        };
        for _ in 0..size {
            let principal = if rng.unit() < HEAVY_ASSIGNMENT_SHARE {
                rng.below(heavy_principals)
            } else {
                rng.below(principal_count)
            };
            let level = rng.unit();
            let target = if level < SUBSCRIPTION_SCOPE_SHARE {
                Target::Subscription
            } else if level < SUBSCRIPTION_SCOPE_SHARE + GROUP_SCOPE_SHARE {
                // Groups holding more resources hold more assignments.
                Target::Group(world.resources[rng.below(RESOURCES)].group)
            } else {
                Target::Resource(rng.below(RESOURCES) as u32)
            };
            let mut scope = world.scope(target).to_string();
            if rng.unit() < 0.1 {
                scope = scope.to_lowercase();
            }
            world.assignments.push(Assignment {
                principal_id: world.principals[principal],
                role_id: rng.pick(&ROLE_WEIGHTS).to_string(),
                scope,
            });
            world.placed.push((principal as u32, target));
        }
        world
    }

    pub fn scope(&self, target: Target) -> &str {
        match target {
            Target::Subscription => &self.subscription,
            Target::Group(group) => &self.groups[group as usize],
            Target::Resource(resource) => &self.resources[resource as usize].id,
        }
    }

    fn random_resource(&self, rng: &mut Rng) -> Target {
        Target::Resource(rng.below(RESOURCES) as u32)
    }

    fn random_action(&self, rng: &mut Rng, target: Target) -> &'static str {
        use action::*;
        match target {
            Target::Subscription => rng.pick(&[
                (SUB_READ, 30),
                (RG_READ, 30),
                (RG_WRITE, 20),
                (RA_WRITE, 15),
                (RA_READ, 5),
            ]),
            Target::Group(_) => rng.pick(&[
                (RG_READ, 40),
                (RG_WRITE, 15),
                (RG_DELETE, 5),
                (RA_WRITE, 15),
                (RA_READ, 15),
                (RA_DELETE, 10),
            ]),
            Target::Resource(resource) => match self.resources[resource as usize].kind {
                Kind::Vm => rng.pick(&[
                    (VM_READ, 40),
                    (VM_WRITE, 25),
                    (VM_DELETE, 10),
                    (RA_WRITE, 10),
                    (RA_READ, 10),
                    (RA_DELETE, 5),
                ]),
                Kind::Nic => rng.pick(&[
                    (NIC_READ, 40),
                    (NIC_WRITE, 25),
                    (NIC_DELETE, 10),
                    (RA_WRITE, 10),
                    (RA_READ, 10),
                    (RA_DELETE, 5),
                ]),
                Kind::Identity => rng.pick(&[
                    (ID_READ, 30),
                    (ID_WRITE, 15),
                    (ID_DELETE, 5),
                    (ID_ASSIGN, 25),
                    (RA_WRITE, 10),
                    (RA_READ, 10),
                    (RA_DELETE, 5),
                ]),
            },
        }
    }

    /// The decisions to time; the same list for both engines.
    pub fn decisions(&self, count: usize) -> Vec<Decision> {
        let mut rng = Rng::new(0xDEC1_5104 ^ self.assignments.len() as u64);
        (0..count)
            .map(|_| {
                let kind = rng.unit();
                let (principal, target) = if kind < 0.45 {
                    // On the path of one of the principal's assignments.
                    let (principal, assigned) = self.placed[rng.below(self.placed.len())];
                    let target = match assigned {
                        Target::Resource(resource) => {
                            if rng.unit() < 0.8 {
                                assigned
                            } else {
                                // One level above: not inherited upward.
                                Target::Group(self.resources[resource as usize].group)
                            }
                        }
                        Target::Group(group) => {
                            let members = &self.group_resources[group as usize];
                            if !members.is_empty() && rng.unit() < 0.7 {
                                Target::Resource(members[rng.below(members.len())])
                            } else {
                                assigned
                            }
                        }
                        Target::Subscription => {
                            let draw = rng.unit();
                            if draw < 0.6 {
                                self.random_resource(&mut rng)
                            } else if draw < 0.9 {
                                Target::Group(rng.below(GROUPS) as u32)
                            } else {
                                assigned
                            }
                        }
                    };
                    (self.principals[principal as usize], target)
                } else if kind < 0.95 {
                    let draw = rng.unit();
                    let target = if draw < 0.85 {
                        self.random_resource(&mut rng)
                    } else if draw < 0.98 {
                        Target::Group(rng.below(GROUPS) as u32)
                    } else {
                        Target::Subscription
                    };
                    (self.principals[rng.below(self.principals.len())], target)
                } else {
                    (
                        ObjectId::from_uuid(rng.guid()),
                        self.random_resource(&mut rng),
                    )
                };
                let action = self.random_action(&mut rng, target);
                // Callers send ids in the casing they hold: mostly canonical.
                let casing = rng.unit();
                let scope = self.scope(target);
                let scope = if casing < 0.9 {
                    scope.to_string()
                } else if casing < 0.95 {
                    scope.to_lowercase()
                } else {
                    scope.to_uppercase()
                };
                Decision {
                    principal,
                    action,
                    scope,
                }
            })
            .collect()
    }
}
