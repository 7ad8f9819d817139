//! Topic routing: a trie over the dot-separated words of binding keys, with `*` (exactly
//! one word) and `#` (zero or more words). Matching walks only the branches the routing
//! key's words select, so its cost does not grow with unrelated bindings; a visited set
//! over (node, word index) bounds the work of patterns like `#.#.#` to nodes × words.

use std::collections::HashSet;

use crate::broker::fast_map::FastMap;

#[derive(Debug, Default)]
struct Node {
    children: FastMap<Box<str>, usize>,
    star: Option<usize>,
    hash: Option<usize>,
    /// This node was reached through a `#`: it may also swallow the next word itself.
    is_hash: bool,
    /// Destinations bound with a key ending at this node, each with its binding count.
    dests: Vec<(usize, u32)>,
}

/// A topic trie mapping binding keys to destination ids.
#[derive(Debug)]
pub struct TopicTrie {
    nodes: Vec<Node>,
    has_hash: bool,
}

impl Default for TopicTrie {
    fn default() -> Self {
        TopicTrie {
            nodes: vec![Node::default()],
            has_hash: false,
        }
    }
}

impl TopicTrie {
    fn walk_or_insert(&mut self, key: &str) -> usize {
        let mut node = 0;
        let mut prev_hash = false;
        for word in key.split('.') {
            // `#.#` matches exactly what `#` matches.
            if word == "#" && prev_hash {
                continue;
            }
            prev_hash = word == "#";
            let next = match word {
                "*" => self.nodes[node].star,
                "#" => self.nodes[node].hash,
                w => self.nodes[node].children.get(w).copied(),
            };
            node = match next {
                Some(n) => n,
                None => {
                    let n = self.nodes.len();
                    self.nodes.push(Node {
                        is_hash: word == "#",
                        ..Node::default()
                    });
                    match word {
                        "*" => self.nodes[node].star = Some(n),
                        "#" => {
                            self.nodes[node].hash = Some(n);
                            self.has_hash = true;
                        }
                        w => {
                            self.nodes[node].children.insert(w.into(), n);
                        }
                    }
                    n
                }
            };
        }
        node
    }

    pub fn insert(&mut self, key: &str, dest: usize) {
        let node = self.walk_or_insert(key);
        let dests = &mut self.nodes[node].dests;
        match dests.iter_mut().find(|(d, _)| *d == dest) {
            Some((_, count)) => *count += 1,
            None => dests.push((dest, 1)),
        }
    }

    pub fn remove(&mut self, key: &str, dest: usize) {
        let node = self.walk_or_insert(key);
        let dests = &mut self.nodes[node].dests;
        if let Some(i) = dests.iter().position(|(d, _)| *d == dest) {
            dests[i].1 -= 1;
            if dests[i].1 == 0 {
                dests.swap_remove(i);
            }
        }
    }

    /// Calls `out` for each destination whose binding key matches `routing_key` (a
    /// destination may be reported more than once; callers dedupe).
    pub fn matches(&self, routing_key: &str, mut out: impl FnMut(usize)) {
        SCRATCH.with(|cell| {
            // A nested call (from `out`) gets its own buffers rather than a borrow panic.
            let mut local = None;
            let mut borrowed = cell.try_borrow_mut().ok();
            let scratch: &mut Scratch = match borrowed.as_deref_mut() {
                Some(s) => s,
                None => local.insert(Scratch::default()),
            };
            let Scratch {
                words,
                stack,
                visited,
            } = scratch;
            // Word boundaries, not slices, so the buffers can be reused across calls.
            words.clear();
            let mut start = 0;
            for (i, b) in routing_key.bytes().enumerate() {
                if b == b'.' {
                    words.push((start, i));
                    start = i + 1;
                }
            }
            words.push((start, routing_key.len()));
            let n = words.len();
            stack.clear();
            stack.push((0usize, 0usize));
            visited.clear();
            while let Some((node, i)) = stack.pop() {
                if self.has_hash && !visited.insert((node, i)) {
                    continue;
                }
                let nd = &self.nodes[node];
                if i == n {
                    for &(d, _) in &nd.dests {
                        out(d);
                    }
                } else {
                    let (a, b) = words[i];
                    if let Some(&c) = nd.children.get(&routing_key[a..b]) {
                        stack.push((c, i + 1));
                    }
                    if let Some(s) = nd.star {
                        stack.push((s, i + 1));
                    }
                }
                if let Some(h) = nd.hash {
                    stack.push((h, i));
                }
                if nd.is_hash && i < n {
                    stack.push((node, i + 1));
                }
            }
            // Do not let one huge key pin a huge buffer.
            if visited.capacity() > 1 << 16 {
                *visited = HashSet::new();
            }
        });
    }
}

/// Buffers reused by `matches` on each thread, so routing allocates nothing.
#[derive(Default)]
struct Scratch {
    words: Vec<(usize, usize)>,
    stack: Vec<(usize, usize)>,
    visited: HashSet<(usize, usize)>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matched(t: &TopicTrie, key: &str) -> Vec<usize> {
        let mut v = Vec::new();
        t.matches(key, |d| v.push(d));
        v.sort();
        v.dedup();
        v
    }

    #[test]
    fn wildcards() {
        let mut t = TopicTrie::default();
        t.insert("a.*.c", 1);
        t.insert("a.#", 2);
        t.insert("#", 3);
        t.insert("*.b.*", 4);
        t.insert("a.b.c", 5);
        t.insert("#.c", 6);
        assert_eq!(matched(&t, "a.b.c"), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(matched(&t, "a"), vec![2, 3]);
        assert_eq!(matched(&t, "x.b.y"), vec![3, 4]);
        assert_eq!(matched(&t, "c"), vec![3, 6]);
        assert_eq!(matched(&t, ""), vec![3]);
        assert_eq!(matched(&t, "a..c"), vec![1, 2, 3, 6]);
        t.remove("#", 3);
        assert_eq!(matched(&t, "x.b.y"), vec![4]);
    }

    #[test]
    fn explosive_patterns_stay_bounded() {
        let mut t = TopicTrie::default();
        let pattern = vec!["#.a"; 50].join(".");
        t.insert(&pattern, 1);
        let key = vec!["a"; 200].join(".");
        assert_eq!(matched(&t, &key), vec![1]);
        let key = vec!["b"; 200].join(".");
        assert!(matched(&t, &key).is_empty());
    }
}
