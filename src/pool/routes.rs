//! The route table: from a request's API version and path to a pool, with a fixed precedence.

use super::PoolSpec;

/// A route: requests of API `version` (if given) whose path starts with `prefix` (if given) go to `pool`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub version: Option<String>,
    pub prefix: Option<String>,
    pub pool: usize,
}

/// The route table, in precedence order: version and prefix, then version, then the longest prefix, then
/// the default pool (the one named `default`), never the order the routes were written in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    /// Sorted: version+prefix (longest prefix first), version only, prefix only (longest first).
    routes: Vec<Route>,
    pub default: Option<usize>,
}

impl Routes {
    pub fn new(mut routes: Vec<Route>, default: Option<usize>) -> Routes {
        let rank = |r: &Route| match (&r.version, &r.prefix) {
            (Some(_), Some(p)) => (0, usize::MAX - p.len()),
            (Some(_), None) => (1, 0),
            (None, Some(p)) => (2, usize::MAX - p.len()),
            (None, None) => (3, 0),
        };
        routes.sort_by_key(rank);
        Routes { routes, default }
    }

    /// The routes, in precedence order.
    pub fn entries(&self) -> &[Route] {
        &self.routes
    }

    /// No route but the default pool (today's single upstream): nothing to look up per request.
    pub fn trivial(&self) -> bool {
        self.routes.is_empty()
    }

    /// The pool of a request of API `version` (the one its Accept matched, if any) for `path`.
    pub fn route(&self, version: Option<&str>, path: &[u8]) -> Option<usize> {
        self.routes
            .iter()
            .find(|r| {
                r.version.as_deref().is_none_or(|v| Some(v) == version)
                    && r.prefix.as_deref().is_none_or(|p| path.starts_with(p.as_bytes()))
            })
            .map(|r| r.pool)
            .or(self.default)
    }

    /// The table as `--check-config` prints it, in precedence order.
    pub fn describe(&self, pools: &[PoolSpec]) -> Vec<String> {
        let mut out: Vec<String> = self
            .routes
            .iter()
            .map(|r| {
                let mut m = Vec::new();
                if let Some(v) = &r.version {
                    m.push(format!("version:{v}"));
                }
                if let Some(p) = &r.prefix {
                    m.push(format!("prefix:{p}"));
                }
                format!("{} -> {}", m.join(","), pools[r.pool].name)
            })
            .collect();
        out.push(match self.default {
            Some(p) => format!("(default) -> {}", pools[p].name),
            None => "(default) -> none: 404 no_route".to_string(),
        });
        out
    }
}
