//! Minimum-cost assignment of tracks to detections.
//!
//! Why Hungarian and not greedy: greedy (best IoU first) swaps identities where two paths cross,
//! because at the crossing the best single pair is not part of the best overall assignment
//! (see `greedy_would_swap` below). Why per component: the gated IoU graph is very sparse (a box
//! overlaps one or two others), so it falls apart into tiny connected components. Solving each
//! component on its own gives the same optimum as one big matrix, and a scene of 100 tracks costs
//! about 100 one-by-one "components" instead of an O(n³) 100x100 solve.
//!
//! All buffers are kept between calls: no allocation in steady state.

/// Cost of a pair that is not an edge, inside a component's dense matrix. Larger than any sum of
/// real costs (each ≤ 1) over components of realistic size, so the solver uses real edges first.
const NO_EDGE: f64 = 1.0e6;

/// One allowed pairing: row (track), column (detection), cost (1 - IoU, lower is better).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Edge {
    pub row: u32,
    pub col: u32,
    pub cost: f32,
}

/// Reusable solver.
#[derive(Debug, Default)]
pub struct Assigner {
    parent: Vec<u32>,
    keyed: Vec<(u32, Edge)>,
    row_local: Vec<u32>,
    col_local: Vec<u32>,
    rows: Vec<u32>,
    cols: Vec<u32>,
    matrix: Vec<f64>,
    u: Vec<f64>,
    v: Vec<f64>,
    p: Vec<usize>,
    way: Vec<usize>,
    minv: Vec<f64>,
    used: Vec<bool>,
}

impl Assigner {
    /// Matches rows `0..n_rows` to columns `0..n_cols` using only `edges`, minimising the total
    /// cost; appends the matched `(row, col)` pairs to `out`. Edges naming rows or columns out of
    /// range are ignored.
    pub fn solve(
        &mut self,
        n_rows: usize,
        n_cols: usize,
        edges: &[Edge],
        out: &mut Vec<(u32, u32)>,
    ) {
        if edges.is_empty() || n_rows == 0 || n_cols == 0 {
            return;
        }
        // Union-find over nodes: rows are 0..n_rows, columns n_rows..n_rows+n_cols.
        let nodes = n_rows + n_cols;
        self.parent.clear();
        self.parent.extend(0..nodes as u32);
        for e in edges {
            if (e.row as usize) < n_rows && (e.col as usize) < n_cols {
                let (a, b) = (e.row, n_rows as u32 + e.col);
                union(&mut self.parent, a, b);
            }
        }
        self.keyed.clear();
        for e in edges {
            if (e.row as usize) < n_rows && (e.col as usize) < n_cols && e.cost.is_finite() {
                let root = find(&mut self.parent, e.row);
                self.keyed.push((root, *e));
            }
        }
        self.keyed.sort_unstable_by_key(|(root, _)| *root);

        self.row_local.clear();
        self.row_local.resize(n_rows, u32::MAX);
        self.col_local.clear();
        self.col_local.resize(n_cols, u32::MAX);
        let mut start = 0;
        while start < self.keyed.len() {
            let root = self.keyed[start].0;
            let mut end = start + 1;
            while end < self.keyed.len() && self.keyed[end].0 == root {
                end += 1;
            }
            if end - start == 1 {
                let e = self.keyed[start].1;
                out.push((e.row, e.col));
            } else {
                self.solve_component(start, end, out);
            }
            start = end;
        }
    }

    fn solve_component(&mut self, start: usize, end: usize, out: &mut Vec<(u32, u32)>) {
        self.rows.clear();
        self.cols.clear();
        for k in start..end {
            let e = self.keyed[k].1;
            if self.row_local[e.row as usize] == u32::MAX {
                self.row_local[e.row as usize] = self.rows.len() as u32;
                self.rows.push(e.row);
            }
            if self.col_local[e.col as usize] == u32::MAX {
                self.col_local[e.col as usize] = self.cols.len() as u32;
                self.cols.push(e.col);
            }
        }
        let (nr, nc) = (self.rows.len(), self.cols.len());
        // The solver wants rows ≤ columns; transpose otherwise.
        let transpose = nr > nc;
        let (n, m) = if transpose { (nc, nr) } else { (nr, nc) };
        self.matrix.clear();
        self.matrix.resize(n * m, NO_EDGE);
        for k in start..end {
            let e = self.keyed[k].1;
            let (r, c) = (
                self.row_local[e.row as usize] as usize,
                self.col_local[e.col as usize] as usize,
            );
            let (i, j) = if transpose { (c, r) } else { (r, c) };
            let slot = &mut self.matrix[i * m + j];
            *slot = slot.min(e.cost as f64);
        }
        self.hungarian(n, m);
        for j in 1..=m {
            let i = self.p[j];
            if i == 0 {
                continue;
            }
            let (i, j) = (i - 1, j - 1);
            if self.matrix[i * m + j] >= NO_EDGE {
                continue;
            }
            let (r, c) = if transpose { (j, i) } else { (i, j) };
            out.push((self.rows[r], self.cols[c]));
        }
        // Reset the local maps for the next component (only the entries set here).
        for &r in &self.rows {
            self.row_local[r as usize] = u32::MAX;
        }
        for &c in &self.cols {
            self.col_local[c as usize] = u32::MAX;
        }
    }

    /// Shortest augmenting path Hungarian algorithm (Kuhn-Munkres with potentials), O(n²m), on
    /// the dense `n x m` matrix in `self.matrix`, `n ≤ m`. Leaves `p[j]` = 1-based row of column
    /// `j` (1-based), 0 for a free column.
    fn hungarian(&mut self, n: usize, m: usize) {
        let inf = f64::INFINITY;
        self.u.clear();
        self.u.resize(n + 1, 0.0);
        self.v.clear();
        self.v.resize(m + 1, 0.0);
        self.p.clear();
        self.p.resize(m + 1, 0);
        self.way.clear();
        self.way.resize(m + 1, 0);
        for i in 1..=n {
            self.p[0] = i;
            let mut j0 = 0usize;
            self.minv.clear();
            self.minv.resize(m + 1, inf);
            self.used.clear();
            self.used.resize(m + 1, false);
            loop {
                self.used[j0] = true;
                let i0 = self.p[j0];
                let mut delta = inf;
                let mut j1 = 0usize;
                for j in 1..=m {
                    if self.used[j] {
                        continue;
                    }
                    let cur = self.matrix[(i0 - 1) * m + (j - 1)] - self.u[i0] - self.v[j];
                    if cur < self.minv[j] {
                        self.minv[j] = cur;
                        self.way[j] = j0;
                    }
                    if self.minv[j] < delta {
                        delta = self.minv[j];
                        j1 = j;
                    }
                }
                if j1 == 0 {
                    // Cannot happen with finite costs; bail out rather than loop forever.
                    return;
                }
                for j in 0..=m {
                    if self.used[j] {
                        let pj = self.p[j];
                        self.u[pj] += delta;
                        self.v[j] -= delta;
                    } else {
                        self.minv[j] -= delta;
                    }
                }
                j0 = j1;
                if self.p[j0] == 0 {
                    break;
                }
            }
            loop {
                let j1 = self.way[j0];
                self.p[j0] = self.p[j1];
                j0 = j1;
                if j0 == 0 {
                    break;
                }
            }
        }
    }
}

fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        let up = parent[parent[x as usize] as usize];
        parent[x as usize] = up;
        x = up;
    }
    x
}

fn union(parent: &mut [u32], a: u32, b: u32) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        // Smaller root wins: keeps roots stable and the sort order deterministic.
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        parent[hi as usize] = lo;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(row: u32, col: u32, cost: f32) -> Edge {
        Edge { row, col, cost }
    }

    fn run(n: usize, m: usize, edges: &[Edge]) -> Vec<(u32, u32)> {
        let mut a = Assigner::default();
        let mut out = Vec::new();
        a.solve(n, m, edges, &mut out);
        out.sort_unstable();
        out
    }

    /// Exhaustive minimum over all matchings that use only edges and are maximal in size first.
    fn brute(n: usize, m: usize, edges: &[Edge]) -> (usize, f64) {
        fn go(
            i: usize,
            n: usize,
            used: &mut Vec<bool>,
            edges: &[Edge],
            acc: (usize, f64),
            best: &mut (usize, f64),
        ) {
            if i == n {
                if acc.0 > best.0 || (acc.0 == best.0 && acc.1 < best.1 - 1e-9) {
                    *best = acc;
                }
                return;
            }
            go(i + 1, n, used, edges, acc, best);
            for ed in edges.iter().filter(|ed| ed.row as usize == i) {
                if !used[ed.col as usize] {
                    used[ed.col as usize] = true;
                    go(
                        i + 1,
                        n,
                        used,
                        edges,
                        (acc.0 + 1, acc.1 + ed.cost as f64),
                        best,
                    );
                    used[ed.col as usize] = false;
                }
            }
        }
        let mut best = (0, 0.0);
        go(0, n, &mut vec![false; m], edges, (0, 0.0), &mut best);
        best
    }

    // a table of cases: the tuple type is the table's columns
    #[allow(clippy::type_complexity)]
    #[test]
    fn cases() {
        let cases: Vec<(&str, usize, usize, Vec<Edge>, Vec<(u32, u32)>)> = vec![
            ("empty", 0, 0, vec![], vec![]),
            ("no edges", 3, 3, vec![], vec![]),
            ("one pair", 1, 1, vec![e(0, 0, 0.1)], vec![(0, 0)]),
            (
                "disjoint pairs",
                2,
                2,
                vec![e(0, 1, 0.2), e(1, 0, 0.3)],
                vec![(0, 1), (1, 0)],
            ),
            // Greedy takes (0,0) at 0.1 and leaves row 1 with nothing; optimum pairs both.
            (
                "greedy_would_swap",
                2,
                2,
                vec![e(0, 0, 0.1), e(0, 1, 0.2), e(1, 0, 0.3)],
                vec![(0, 1), (1, 0)],
            ),
            (
                "more rows than columns",
                3,
                1,
                vec![e(0, 0, 0.5), e(1, 0, 0.2), e(2, 0, 0.4)],
                vec![(1, 0)],
            ),
            (
                "more columns than rows",
                1,
                3,
                vec![e(0, 0, 0.5), e(0, 1, 0.2), e(0, 2, 0.4)],
                vec![(0, 1)],
            ),
            (
                "out of range ignored",
                1,
                1,
                vec![e(0, 5, 0.1), e(7, 0, 0.1), e(0, 0, 0.9)],
                vec![(0, 0)],
            ),
            (
                "non-finite cost ignored",
                1,
                1,
                vec![e(0, 0, f32::NAN)],
                vec![],
            ),
        ];
        for (name, n, m, edges, want) in cases {
            assert_eq!(run(n, m, &edges), want, "{name}");
        }
    }

    #[test]
    fn matches_brute_force_on_random_sparse_graphs() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut a = Assigner::default();
        for _ in 0..300 {
            let n = rng.gen_range(1..7);
            let m = rng.gen_range(1..7);
            let mut edges = Vec::new();
            for r in 0..n {
                for c in 0..m {
                    if rng.gen_bool(0.4) {
                        edges.push(e(r as u32, c as u32, rng.gen_range(0.0..1.0)));
                    }
                }
            }
            let mut out = Vec::new();
            a.solve(n, m, &edges, &mut out);
            let cost: f64 = out
                .iter()
                .map(|&(r, c)| {
                    edges
                        .iter()
                        .find(|ed| ed.row == r && ed.col == c)
                        .unwrap()
                        .cost as f64
                })
                .sum();
            let (bn, bc) = brute(n, m, &edges);
            assert_eq!(out.len(), bn, "{edges:?}");
            assert!((cost - bc).abs() < 1e-4, "{cost} vs {bc} {edges:?}");
            // each row and column at most once
            let mut rows: Vec<_> = out.iter().map(|p| p.0).collect();
            let mut cols: Vec<_> = out.iter().map(|p| p.1).collect();
            rows.sort_unstable();
            cols.sort_unstable();
            rows.dedup();
            cols.dedup();
            assert_eq!(rows.len(), out.len());
            assert_eq!(cols.len(), out.len());
        }
    }
}
