//! Interned scope keys as a tree of shared prefixes: a million assignment scopes under a few
//! thousand groups keep each group's text once and per scope only its last segment.
//!
//! A key is cut before each `/` into segments (`/subscriptions`, `/{id}`, `/resourcegroups`, …);
//! a node is one segment under its parent node. Node 0 is the empty prefix. Lookups go through one
//! open-addressing table of node numbers keyed by (parent, segment), so the tree keeps no string
//! twice and no per-key hash map.

/// One node: its parent, where its segment sits in `ScopeTree::text`, and the length of the
/// whole key it stands for.
#[derive(Debug, Clone, Copy, Default)]
struct Node {
    parent: u32,
    offset: u32,
    segment: u32,
    key_len: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct ScopeTree {
    // Invariant: `nodes[0]` is the empty prefix; every other node's parent precedes it.
    nodes: Vec<Node>,
    // Every node's segment, concatenated.
    text: String,
    // Node numbers by `child_hash(parent, segment)`, 0 for an empty bucket; a power of two in
    // length, at most three quarters full.
    table: Vec<u32>,
}

impl Default for ScopeTree {
    fn default() -> Self {
        ScopeTree {
            nodes: vec![Node::default()],
            text: String::new(),
            table: vec![0; 16],
        }
    }
}

/// The segments of `key`: cut before every `/` (a key not starting with `/` has a first segment
/// without one).
fn segments(key: &str) -> impl Iterator<Item = &str> {
    let bytes = key.as_bytes();
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= bytes.len() {
            return None;
        }
        let end = bytes[start + 1..]
            .iter()
            .position(|byte| *byte == b'/')
            .map_or(bytes.len(), |at| start + 1 + at);
        let segment = key.get(start..end);
        start = end;
        segment
    })
}

fn child_hash(parent: u32, segment: &str) -> u64 {
    let mut hash = super::FNV_OFFSET ^ u64::from(parent).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for byte in segment.as_bytes() {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(super::FNV_PRIME);
    }
    hash ^ (hash >> 29)
}

impl ScopeTree {
    fn segment(&self, node: &Node) -> &str {
        self.text
            .get(node.offset as usize..(node.offset + node.segment) as usize)
            .unwrap_or_default()
    }

    /// The child of `parent` for `segment`, or the table bucket where it would go.
    fn probe(&self, parent: u32, segment: &str) -> Result<u32, usize> {
        let mask = self.table.len() - 1;
        let mut bucket = child_hash(parent, segment) as usize & mask;
        // Terminates: the table always has empty buckets.
        loop {
            match self.table[bucket] {
                0 => return Err(bucket),
                found => {
                    let node = &self.nodes[found as usize];
                    if node.parent == parent && self.segment(node) == segment {
                        return Ok(found);
                    }
                }
            }
            bucket = (bucket + 1) & mask;
        }
    }

    /// The node of `key`, if interned.
    pub(crate) fn find(&self, key: &str) -> Option<u32> {
        let mut node = 0;
        for segment in segments(key) {
            node = self.probe(node, segment).ok()?;
        }
        (node != 0).then_some(node)
    }

    /// The node of `key`, interning it (and its prefixes) when new. Never 0 for a non-empty key.
    pub(crate) fn intern(&mut self, key: &str) -> u32 {
        let mut node = 0;
        for segment in segments(key) {
            node = match self.probe(node, segment) {
                Ok(child) => child,
                Err(bucket) => self.add(node, segment, bucket),
            };
        }
        node
    }

    fn add(&mut self, parent: u32, segment: &str, bucket: usize) -> u32 {
        let number = self.nodes.len() as u32;
        let key_len = self.nodes[parent as usize].key_len + segment.len() as u32;
        self.nodes.push(Node {
            parent,
            offset: self.text.len() as u32,
            segment: segment.len() as u32,
            key_len,
        });
        self.text.push_str(segment);
        self.table[bucket] = number;
        if self.nodes.len() * 4 > self.table.len() * 3 {
            self.grow();
        }
        number
    }

    fn grow(&mut self) {
        let capacity = self.table.len() * 2;
        let mask = capacity - 1;
        let mut table = vec![0u32; capacity];
        for (number, node) in self.nodes.iter().enumerate().skip(1) {
            let mut bucket = child_hash(node.parent, self.segment(node)) as usize & mask;
            while table[bucket] != 0 {
                bucket = (bucket + 1) & mask;
            }
            table[bucket] = number as u32;
        }
        self.table = table;
    }

    /// Whether the key of `node` is a prefix of `text` (byte for byte).
    fn is_prefix_of(&self, node: u32, text: &str) -> bool {
        let Some(mut current) = self.nodes.get(node as usize) else {
            return false;
        };
        let mut end = current.key_len as usize;
        if end > text.len() {
            return false;
        }
        while end > 0 {
            let segment = self.segment(current);
            let start = end - segment.len();
            if text.get(start..end) != Some(segment) {
                return false;
            }
            end = start;
            current = &self.nodes[current.parent as usize];
        }
        true
    }

    /// `scope_contains(key of node, scope)` without building the key.
    pub(crate) fn contains(&self, node: u32, scope: &str) -> bool {
        let Some(found) = self.nodes.get(node as usize) else {
            return false;
        };
        let len = found.key_len as usize;
        (len == 1 && self.segment(found) == "/")
            || (self.is_prefix_of(node, scope)
                && (scope.len() == len || scope.as_bytes().get(len) == Some(&b'/')))
    }

    /// The key of `node`.
    pub(crate) fn key(&self, node: u32) -> String {
        let mut parts = Vec::new();
        let mut current = node as usize;
        while current != 0 {
            let Some(found) = self.nodes.get(current) else {
                break;
            };
            parts.push(self.segment(found));
            current = found.parent as usize;
        }
        parts.iter().rev().copied().collect()
    }

    /// Heap bytes held (capacities, not lengths).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.text.capacity()
            + self.table.capacity() * 4
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        self.nodes.shrink_to_fit();
        self.text.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cut_before_each_slash() {
        assert_eq!(segments("/").collect::<Vec<_>>(), ["/"]);
        assert_eq!(
            segments("/subscriptions/s1/resourcegroups/g").collect::<Vec<_>>(),
            ["/subscriptions", "/s1", "/resourcegroups", "/g"]
        );
        assert_eq!(segments("a//b").collect::<Vec<_>>(), ["a", "/", "/b"]);
        assert_eq!(segments("").count(), 0);
    }

    #[test]
    fn interned_keys_share_prefixes_and_round_trip() {
        let mut tree = ScopeTree::default();
        let keys: Vec<String> = (0..5000)
            .map(|n| {
                format!(
                    "/subscriptions/s/resourcegroups/g{}/providers/p/i{n}",
                    n % 7
                )
            })
            .chain(["/".to_string(), "/subscriptions/s".to_string()])
            .collect();
        let nodes: Vec<u32> = keys.iter().map(|key| tree.intern(key)).collect();
        for (key, node) in keys.iter().zip(&nodes) {
            assert_eq!(tree.find(key), Some(*node));
            assert_eq!(tree.intern(key), *node, "interned once");
            assert_eq!(&tree.key(*node), key);
        }
        assert_eq!(
            tree.find("/subscriptions/s/resourcegroups/g1/providers/p/i5001"),
            None
        );
        assert_eq!(tree.find(""), None);
        // 5000 leaves, 7 groups with their 2-node provider path, the shared top, the root.
        assert!(tree.nodes.len() < 5000 + 7 * 3 + 8, "{}", tree.nodes.len());
    }

    #[test]
    fn containment_matches_the_string_rule() {
        let mut tree = ScopeTree::default();
        let samples = [
            "/",
            "/subscriptions/s",
            "/subscriptions/s/resourcegroups/rg1",
            "/subscriptions/s/resourcegroups/rg10",
            "/subscriptions/s/resourcegroups/rg1/providers/x/y",
            "/subscriptions/s0",
        ];
        for ancestor in samples {
            let node = tree.intern(ancestor);
            for scope in samples {
                assert_eq!(
                    tree.contains(node, scope),
                    super::super::scope_contains(ancestor, scope),
                    "{ancestor} over {scope}"
                );
            }
        }
    }
}
