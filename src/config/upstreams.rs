//! `--upstream`, `--route`, `--balance` and the health flags: the named pools, their servers and the route
//! table.

use super::validate::resolve;
use super::Args;
use crate::pool::{Balance, Health, PoolSpec, Route, Routes, ServerSpec};

/// The pools, the routes, passive health and retries.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstreams {
    /// Empty: the built-in echo upstream (a pool `default` of one server, made at start).
    pub pools: Vec<PoolSpec>,
    pub routes: Routes,
    pub health: Health,
    pub retries: u32,
    /// `--health-interval`, `--health-timeout`, `--health-rise`, `--health-fall` (for the pools with a
    /// `--health` path).
    pub checks: Checks,
    /// `--dns-refresh` (zero: off).
    pub dns_refresh: std::time::Duration,
}

/// How the active health checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    pub interval: std::time::Duration,
    pub timeout: std::time::Duration,
    pub rise: u32,
    pub fall: u32,
}

impl Upstreams {
    /// The pool named `default` (a bare `--upstream HOST:PORT`).
    pub fn default_pool(&self) -> Option<&PoolSpec> {
        self.pools.iter().find(|p| p.name == "default")
    }
}

/// The values of the repeatable flags as one list: a flag given several times, or a configuration file's
/// array (which the file turns into one comma-separated value).
fn items(values: &[String]) -> impl Iterator<Item = &str> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn server(item: &str) -> Result<ServerSpec, String> {
    if item.contains("://") {
        let bare = item.split_once("://").map_or("", |(_, r)| r).trim_end_matches('/');
        return Err(format!(
            "--upstream {item:?}: give HOST:PORT without a scheme (e.g. --upstream {bare}); the upstream speaks plain HTTP/1.1"
        ));
    }
    let (name, weight) = match item.rsplit_once('@') {
        Some((n, w)) => match w.parse::<u32>() {
            Ok(w) if (1..=1000).contains(&w) => (n, w),
            _ => return Err(format!("--upstream {item:?}: the weight after @ is 1 to 1000")),
        },
        None => (item, 1),
    };
    Ok(ServerSpec {
        addr: resolve(name).map_err(|e| format!("--upstream {name:?}: {e}"))?,
        name: name.to_string(),
        weight,
    })
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

pub fn upstreams(a: &Args) -> Result<Upstreams, String> {
    let mut pools: Vec<PoolSpec> = Vec::new();
    let mut current: Option<usize> = None;
    for item in items(&a.upstream) {
        let addr = match item.split_once('=') {
            Some((name, addr)) => {
                let name = name.trim();
                if !valid_name(name) {
                    return Err(format!("--upstream {item:?}: a pool name is 1-64 of A-Z a-z 0-9 - _ ."));
                }
                if pools.iter().any(|p| p.name == name) {
                    return Err(format!(
                        "--upstream: pool {name:?} given twice (list its servers in one flag)"
                    ));
                }
                pools.push(PoolSpec {
                    name: name.to_string(),
                    servers: Vec::new(),
                    balance: Balance::P2c,
                    health: None,
                });
                current = Some(pools.len() - 1);
                addr.trim()
            }
            None => item,
        };
        let p = match current {
            Some(p) => p,
            None => {
                pools.push(PoolSpec {
                    name: "default".into(),
                    servers: Vec::new(),
                    balance: Balance::P2c,
                    health: None,
                });
                current = Some(pools.len() - 1);
                pools.len() - 1
            }
        };
        let s = server(addr)?;
        if pools[p].servers.iter().any(|x| x.addr == s.addr) {
            return Err(format!(
                "--upstream: {} is listed twice in pool {:?}",
                s.name, pools[p].name
            ));
        }
        pools[p].servers.push(s);
        if pools[p].servers.len() > 64 {
            return Err(format!("--upstream: pool {:?} has more than 64 servers", pools[p].name));
        }
    }
    let pool_of = |pools: &[PoolSpec], name: &str, flag: &str| {
        pools
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| format!("{flag}: no pool named {name:?} (pools: {})", names(pools)))
    };
    for item in items(&a.balance) {
        let Some((name, mode)) = item.split_once('=') else {
            return Err(format!("--balance {item:?}: give NAME=p2c|round-robin|hash"));
        };
        let p = pool_of(&pools, name.trim(), "--balance")?;
        pools[p].balance = Balance::parse(mode).map_err(|e| format!("--balance {name}: {e}"))?;
    }
    for item in items(&a.health) {
        let Some((name, path)) = item.split_once('=') else {
            return Err(format!("--health {item:?}: give NAME=/path"));
        };
        let p = pool_of(&pools, name.trim(), "--health")?;
        let path = path.trim();
        if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("--health {item:?}: the path starts with / and has no spaces"));
        }
        pools[p].health = Some(path.to_string());
    }
    if a.health_rise == 0 || a.health_fall == 0 || a.health_interval.is_zero() || a.health_timeout.is_zero() {
        return Err("--health-rise, --health-fall, --health-interval and --health-timeout must be above 0".into());
    }
    // A route is `version:V` and/or `prefix:/P`, ended by its pool's name.
    let mut routes = Vec::new();
    let (mut version, mut prefix): (Option<String>, Option<String>) = (None, None);
    for item in items(&a.route) {
        if let Some(v) = item.strip_prefix("version:") {
            if version.replace(v.trim().to_string()).is_some() || v.trim().is_empty() {
                return Err(format!("--route: one non-empty version per route ({item:?})"));
            }
        } else if let Some(p) = item.strip_prefix("prefix:") {
            if !p.starts_with('/') || prefix.replace(p.to_string()).is_some() {
                return Err(format!("--route: one prefix per route, starting with / ({item:?})"));
            }
        } else {
            if version.is_none() && prefix.is_none() {
                return Err(format!(
                    "--route {item:?}: give version:V and/or prefix:/P before the pool (e.g. --route version:v2,{item})"
                ));
            }
            let route = Route {
                version: version.take(),
                prefix: prefix.take(),
                pool: pool_of(&pools, item, "--route")?,
            };
            if routes
                .iter()
                .any(|r: &Route| r.version == route.version && r.prefix == route.prefix)
            {
                return Err(format!("--route: the same version and prefix routed twice ({item:?})"));
            }
            routes.push(route);
        }
    }
    if version.is_some() || prefix.is_some() {
        return Err("--route: a route ends with its pool's name (e.g. --route prefix:/billing/,billing)".into());
    }
    for (v, flag) in [
        (a.eject_max_percent, "--eject-max-percent"),
        (a.panic_threshold, "--panic-threshold"),
    ] {
        if v > 100 {
            return Err(format!("{flag} {v}: a percentage, 0 to 100"));
        }
    }
    if a.eject_after == 0 {
        return Err("--eject-after 0: at least 1 failure".into());
    }
    if a.retries > 8 {
        return Err(format!("--retries {}: at most 8", a.retries));
    }
    let default = pools.iter().position(|p| p.name == "default");
    Ok(Upstreams {
        routes: Routes::new(routes, default.or(if pools.is_empty() { Some(0) } else { None })),
        pools,
        health: Health {
            eject_after: a.eject_after,
            eject_time: a.eject_time,
            eject_max_percent: a.eject_max_percent,
            panic_threshold: a.panic_threshold,
        },
        retries: a.retries,
        dns_refresh: a.dns_refresh,
        checks: Checks {
            interval: a.health_interval,
            timeout: a.health_timeout,
            rise: a.health_rise,
            fall: a.health_fall,
        },
    })
}

fn names(pools: &[PoolSpec]) -> String {
    pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Upstreams, String> {
        let mut all = vec!["portcullis"];
        all.extend_from_slice(args);
        upstreams(&Args::parse_from(all))
    }

    #[test]
    fn pools_routes_and_balance() {
        let u = parse(&[
            "--upstream",
            "127.0.0.1:8001",
            "--upstream",
            "v2=127.0.0.1:8002,127.0.0.1:8003@3",
            "--upstream",
            "billing=127.0.0.1:8004",
            "--route",
            "version:v2,v2",
            "--route",
            "prefix:/billing/,billing",
            "--balance",
            "v2=hash",
        ])
        .unwrap();
        let names: Vec<&str> = u.pools.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["default", "v2", "billing"]);
        assert_eq!(u.pools[1].servers[1].weight, 3);
        assert_eq!(u.pools[1].balance, Balance::Hash);
        assert_eq!(u.routes.route(Some("v2"), b"/x"), Some(1));
        assert_eq!(u.routes.route(None, b"/billing/1"), Some(2));
        assert_eq!(u.routes.route(None, b"/x"), Some(0));
        // A configuration file's arrays arrive joined with commas: the same pools and routes.
        let joined = parse(&[
            "--upstream",
            "127.0.0.1:8001,v2=127.0.0.1:8002,127.0.0.1:8003@3,billing=127.0.0.1:8004",
            "--route",
            "version:v2,v2,prefix:/billing/,billing",
            "--balance",
            "v2=hash",
        ])
        .unwrap();
        assert_eq!(joined, u);
        // Without any: the echo upstream is the default pool.
        let none = parse(&[]).unwrap();
        assert!(none.pools.is_empty() && none.routes.default == Some(0));
    }

    #[test]
    fn mistakes_are_named() {
        let err = |args: &[&str]| parse(args).unwrap_err();
        assert!(err(&["--upstream", "http://a:1"]).contains("without a scheme"));
        assert!(err(&["--upstream", "a=127.0.0.1:1", "--upstream", "a=127.0.0.1:2"]).contains("given twice"));
        assert!(err(&["--upstream", "127.0.0.1:1@0"]).contains("weight"));
        assert!(err(&["--upstream", "a=127.0.0.1:1", "--route", "version:v2,b"]).contains("no pool named \"b\""));
        assert!(err(&["--upstream", "a=127.0.0.1:1", "--route", "a"]).contains("version:V and/or prefix"));
        assert!(err(&["--upstream", "a=127.0.0.1:1", "--route", "prefix:x,a"]).contains("starting with /"));
        assert!(err(&["--upstream", "a=127.0.0.1:1", "--route", "version:v1"]).contains("ends with its pool"));
        assert!(err(&["--upstream", "a=127.0.0.1:1", "--balance", "a=random"]).contains("p2c"));
        assert!(err(&["--panic-threshold", "101"]).contains("percentage"));
        assert!(err(&["--upstream", "a b=127.0.0.1:1"]).contains("pool name"));
    }
}
