//! Grouping rows by a group id (a query, a session, a user) without hashing.
//!
//! Logged data usually stores a group's rows next to each other. [`GroupIndex::new`]
//! first looks for that: if every group id forms a single run, the runs are the groups
//! (O(n)). Otherwise it sorts row indices by group id (O(n log n)). Either way groups come
//! out in ascending id order and rows within a group in their original order, so results
//! never depend on how the input was laid out beyond that.

/// Rows grouped by id: `order[bounds[g]..bounds[g + 1]]` are the rows of group `g`.
#[derive(Debug, Clone)]
pub struct GroupIndex {
    order: Vec<u32>,
    bounds: Vec<usize>,
}

impl GroupIndex {
    /// Groups the rows of `groups` (one id per row).
    pub fn new(groups: &[u64]) -> Self {
        let n = groups.len();
        // Runs of equal ids.
        let mut runs: Vec<(u64, usize, usize)> = Vec::new();
        let mut start = 0;
        for i in 1..=n {
            if i == n || groups[i] != groups[start] {
                runs.push((groups[start], start, i));
                start = i;
            }
        }
        runs.sort_unstable_by_key(|r| (r.0, r.1));
        let contiguous = runs.windows(2).all(|w| w[0].0 != w[1].0);
        let mut order = Vec::with_capacity(n);
        let mut bounds = vec![0];
        if contiguous {
            for &(_, s, e) in &runs {
                order.extend(s as u32..e as u32);
                bounds.push(order.len());
            }
        } else {
            order.extend(0..n as u32);
            order.sort_unstable_by_key(|&i| (groups[i as usize], i));
            for i in 1..=n {
                if i == n || groups[order[i] as usize] != groups[order[i - 1] as usize] {
                    bounds.push(i);
                }
            }
            if n == 0 {
                bounds.truncate(1);
            }
        }
        Self { order, bounds }
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.bounds.len() - 1
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row indices of group `g`.
    pub fn rows(&self, g: usize) -> &[u32] {
        &self.order[self.bounds[g]..self.bounds[g + 1]]
    }

    /// Iterates over the groups' row lists.
    pub fn iter(&self) -> impl Iterator<Item = &[u32]> {
        (0..self.len()).map(|g| self.rows(g))
    }
}

#[cfg(test)]
mod tests {
    use super::GroupIndex;

    #[test]
    fn contiguous_and_scattered_groups_agree() {
        let contiguous = GroupIndex::new(&[7, 7, 3, 3, 3, 9]);
        let rows: Vec<Vec<u32>> = contiguous.iter().map(|r| r.to_vec()).collect();
        assert_eq!(rows, vec![vec![2, 3, 4], vec![0, 1], vec![5]]);
        let scattered = GroupIndex::new(&[7, 3, 7, 3, 9, 3]);
        let rows: Vec<Vec<u32>> = scattered.iter().map(|r| r.to_vec()).collect();
        assert_eq!(rows, vec![vec![1, 3, 5], vec![0, 2], vec![4]]);
        assert!(GroupIndex::new(&[]).is_empty());
    }
}
