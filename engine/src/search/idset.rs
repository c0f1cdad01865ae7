//! A small open-addressing set of u32 ids with cheap clear, sized to the
//! query (not to the index), so per-query memory does not grow with n.

/// Set of u32 (u32::MAX is reserved as the empty marker).
#[derive(Clone, Debug)]
pub struct IdSet {
    slots: Vec<u32>,
    len: usize,
}

const EMPTY: u32 = u32::MAX;

impl IdSet {
    /// Empty set with room for about `cap` ids before growing.
    pub fn with_capacity(cap: usize) -> Self {
        IdSet {
            slots: vec![EMPTY; (cap * 2).next_power_of_two().max(64)],
            len: 0,
        }
    }
    /// Remove everything.
    pub fn clear(&mut self) {
        if self.len > 0 {
            self.slots.fill(EMPTY);
            self.len = 0;
        }
    }
    #[inline]
    fn hash(id: u32, mask: usize) -> usize {
        (id.wrapping_mul(0x9E37_79B1) as usize ^ (id as usize >> 16)) & mask
    }
    /// Insert; true if newly added.
    #[inline]
    pub fn insert(&mut self, id: u32) -> bool {
        debug_assert!(id != EMPTY);
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = Self::hash(id, mask);
        loop {
            match self.slots[i] {
                EMPTY => {
                    self.slots[i] = id;
                    self.len += 1;
                    return true;
                }
                x if x == id => return false,
                _ => i = (i + 1) & mask,
            }
        }
    }
    fn grow(&mut self) {
        let bigger = vec![EMPTY; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, bigger);
        self.len = 0;
        for id in old.into_iter().filter(|&x| x != EMPTY) {
            self.insert(id);
        }
    }
    /// Number of ids.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    proptest! {
        #[test]
        fn behaves_like_a_hashset(ids in proptest::collection::vec(0u32..5000, 0..3000)) {
            let mut s = super::IdSet::with_capacity(4);
            let mut h = std::collections::HashSet::new();
            for id in ids {
                prop_assert_eq!(s.insert(id), h.insert(id));
            }
            prop_assert_eq!(s.len(), h.len());
            s.clear();
            prop_assert!(s.is_empty());
        }
    }
}
