//! The works an instance serves (SPEC §13): the built-in `text`, the works file's `http`
//! works, and an embedder's own, each with its settings; and the [`WorksBuilder`] that
//! puts them together.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::file::{WorkSpec, is_work_name};
use super::schema::InputSchema;
use super::text::TextWork;
use super::upstream::HttpWork;
use super::work::Work;

/// The built-in work's name.
pub const TEXT: &str = "text";

/// How the service runs a work: its deadline, concurrency, attempts, schema and callers.
#[derive(Debug, Clone)]
pub struct WorkSettings {
    /// Time for one attempt (a sync request's slot wait and call together).
    pub timeout: Duration,
    /// Attempts of this work running at once on this instance.
    pub max_in_flight: u32,
    /// Attempts per async request.
    pub max_attempts: u32,
    pub input_schema: Option<InputSchema>,
    /// Tenants that may call the work; `None`: every tenant.
    pub tenants: Option<Vec<String>>,
}

impl Default for WorkSettings {
    /// The works file's defaults: 30 s, 64 at once, 3 attempts, any input, any tenant.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            max_in_flight: 64,
            max_attempts: 3,
            input_schema: None,
            tenants: None,
        }
    }
}

/// A work with its name and settings.
#[derive(Clone)]
pub struct RegisteredWork {
    pub name: String,
    pub work: Arc<dyn Work>,
    pub settings: WorkSettings,
    /// `max_in_flight` permits: an attempt holds one while it runs.
    pub slots: Arc<tokio::sync::Semaphore>,
    /// The idempotency scope of its sync route: `POST /sync` for `text` (so `/sync` and
    /// `/sync/text` share keys), `POST /sync/NAME` otherwise (§17: tenant, mode, work).
    /// Made once per work at start, so leaking it is bounded.
    pub sync_scope: &'static str,
    /// The same for its async route: `POST /async` for `text`, `POST /async/NAME`.
    pub async_scope: &'static str,
}

impl RegisteredWork {
    pub fn new(name: &str, work: Arc<dyn Work>, settings: WorkSettings) -> Self {
        let slots = Arc::new(tokio::sync::Semaphore::new(settings.max_in_flight as usize));
        let (sync_scope, async_scope) = match name {
            TEXT => (
                crate::idempotency::SYNC_SCOPE,
                crate::idempotency::ASYNC_SCOPE,
            ),
            name => (
                &*Box::leak(format!("POST /sync/{name}").into_boxed_str()),
                &*Box::leak(format!("POST /async/{name}").into_boxed_str()),
            ),
        };
        Self {
            name: name.to_owned(),
            work,
            settings,
            slots,
            sync_scope,
            async_scope,
        }
    }

    /// Whether `tenant` may call it (others are told it does not exist).
    pub fn allows(&self, tenant: &str) -> bool {
        self.settings
            .tenants
            .as_ref()
            .is_none_or(|list| list.iter().any(|t| t == tenant))
    }
}

impl std::fmt::Debug for RegisteredWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredWork")
            .field("name", &self.name)
            .field("kind", &self.work.kind())
            .field("settings", &self.settings)
            .finish()
    }
}

/// Works by name; `text` is always there.
#[derive(Debug, Clone)]
pub struct Registry {
    works: BTreeMap<String, RegisteredWork>,
    /// `--work-workers`: upstream calls of every work at once (SPEC §17 "Two pools").
    pool: Arc<tokio::sync::Semaphore>,
}

impl Registry {
    /// The work `name` as `tenant` sees it: `None` when it does not exist or the tenant
    /// may not call it.
    pub fn get(&self, name: &str, tenant: &str) -> Option<&RegisteredWork> {
        self.works.get(name).filter(|w| w.allows(tenant))
    }

    /// The pool every upstream call of a work (not `text`) holds a permit of.
    pub fn pool(&self) -> &tokio::sync::Semaphore {
        &self.pool
    }

    /// The pool, to hold a permit beyond a borrow (a sync request's task).
    pub fn pool_handle(&self) -> Arc<tokio::sync::Semaphore> {
        self.pool.clone()
    }

    /// The work `name` whoever asks (the engine runs what was admitted).
    pub fn named(&self, name: &str) -> Option<&RegisteredWork> {
        self.works.get(name)
    }

    /// Every work `tenant` may call, by name.
    pub fn visible<'a>(&'a self, tenant: &'a str) -> impl Iterator<Item = &'a RegisteredWork> {
        self.works.values().filter(move |w| w.allows(tenant))
    }

    /// Every work's name, by name (metric labels come from these only).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.works.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.works.len()
    }

    pub fn is_empty(&self) -> bool {
        self.works.is_empty()
    }
}

/// Puts together the works an instance serves:
///
/// ```
/// use consuma::works::{Work, WorkCall, WorkError, WorksBuilder, registry::WorkSettings};
///
/// struct Shout;
///
/// #[async_trait::async_trait]
/// impl Work for Shout {
///     async fn perform(&self, call: &WorkCall) -> Result<serde_json::Value, WorkError> {
///         let input: serde_json::Value = call.parse()?;
///         let word = input["word"].as_str().ok_or_else(|| WorkError::rejected("no word"))?;
///         Ok(serde_json::json!({ "shout": word.to_uppercase() }))
///     }
/// }
///
/// let works = WorksBuilder::new().work("shout", Shout, WorkSettings::default()).build().unwrap();
/// assert!(works.get("shout", "default").is_some());
/// assert!(works.get("text", "default").is_some());
/// ```
pub struct WorksBuilder {
    work_workers: usize,
    text_delay: Duration,
    specs: Vec<WorkSpec>,
    custom: Vec<RegisteredWork>,
}

impl Default for WorksBuilder {
    fn default() -> Self {
        Self {
            work_workers: 256,
            text_delay: Duration::ZERO,
            specs: Vec::new(),
            custom: Vec::new(),
        }
    }
}

impl WorksBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// `--work-workers` (default 256): upstream calls at once; no work may hold more
    /// than half of them (at least 1), whatever its `max_in_flight`.
    pub fn work_workers(mut self, n: usize) -> Self {
        self.work_workers = n.max(1);
        self
    }

    /// `text`'s simulated delay (`--work-delay-ms`).
    pub fn text_delay(mut self, delay: Duration) -> Self {
        self.text_delay = delay;
        self
    }

    /// The `http` works of a works file.
    pub fn specs(mut self, specs: impl IntoIterator<Item = WorkSpec>) -> Self {
        self.specs.extend(specs);
        self
    }

    /// An embedder's own work under `name` (`^[a-z][a-z0-9-]{0,62}$`, not `text`).
    pub fn work(mut self, name: &str, work: impl Work, settings: WorkSettings) -> Self {
        self.custom
            .push(RegisteredWork::new(name, Arc::new(work), settings));
        self
    }

    /// The registry, or why a name cannot be served (bad, reserved or given twice).
    pub fn build(self) -> anyhow::Result<Registry> {
        let mut works = BTreeMap::new();
        let text = RegisteredWork::new(
            TEXT,
            Arc::new(TextWork {
                delay: self.text_delay,
            }),
            WorkSettings {
                timeout: self.text_delay + Duration::from_secs(30),
                max_in_flight: 10_000,
                max_attempts: 1,
                input_schema: None,
                tenants: None,
            },
        );
        works.insert(TEXT.to_owned(), text);
        let from_file = self.specs.into_iter().map(|spec| {
            let settings = WorkSettings {
                timeout: spec.timeout,
                max_in_flight: spec.max_in_flight,
                max_attempts: spec.max_attempts,
                input_schema: spec.input_schema.clone(),
                tenants: spec.tenants.clone(),
            };
            let name = spec.name.clone();
            HttpWork::new(spec).map(|w| RegisteredWork::new(&name, Arc::new(w), settings))
        });
        let half = (self.work_workers / 2).max(1);
        for mut work in from_file
            .collect::<anyhow::Result<Vec<_>>>()?
            .into_iter()
            .chain(self.custom)
        {
            let slots = (work.settings.max_in_flight as usize).min(half);
            work.slots = Arc::new(tokio::sync::Semaphore::new(slots));
            anyhow::ensure!(
                is_work_name(&work.name) && work.name != TEXT,
                "work name {:?}: must match ^[a-z][a-z0-9-]{{0,62}}$ and not be `text`",
                work.name
            );
            let name = work.name.clone();
            anyhow::ensure!(
                works.insert(name.clone(), work).is_none(),
                "work {name:?} is defined twice"
            );
        }
        let pool = Arc::new(tokio::sync::Semaphore::new(self.work_workers));
        Ok(Registry { works, pool })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::works::{WorkCall, WorkError};

    struct Echo;

    #[async_trait::async_trait]
    impl Work for Echo {
        async fn perform(&self, call: &WorkCall) -> Result<serde_json::Value, WorkError> {
            call.parse()
        }
    }

    #[test]
    fn names_are_checked_and_unique() {
        let s = WorkSettings::default;
        assert!(WorksBuilder::new().work("text", Echo, s()).build().is_err());
        assert!(WorksBuilder::new().work("Bad", Echo, s()).build().is_err());
        assert!(
            WorksBuilder::new()
                .work("e", Echo, s())
                .work("e", Echo, s())
                .build()
                .is_err()
        );
        let r = WorksBuilder::new().work("e", Echo, s()).build().unwrap();
        assert_eq!(r.names().collect::<Vec<_>>(), ["e", "text"]);
    }

    #[test]
    fn no_work_holds_more_than_half_of_the_pool() {
        let wide = WorkSettings {
            max_in_flight: 10_000,
            ..WorkSettings::default()
        };
        let r = WorksBuilder::new()
            .work_workers(10)
            .work("e", Echo, wide)
            .build()
            .unwrap();
        assert_eq!(r.get("e", "t").unwrap().slots.available_permits(), 5);
        assert_eq!(r.pool().available_permits(), 10);
        let one = WorksBuilder::new()
            .work_workers(1)
            .work("e", Echo, WorkSettings::default());
        assert_eq!(
            one.build()
                .unwrap()
                .get("e", "t")
                .unwrap()
                .slots
                .available_permits(),
            1
        );
    }

    #[test]
    fn tenants_limit_who_sees_a_work() {
        let only_acme = WorkSettings {
            tenants: Some(vec!["acme".into()]),
            ..WorkSettings::default()
        };
        let r = WorksBuilder::new()
            .work("e", Echo, only_acme)
            .build()
            .unwrap();
        assert!(r.get("e", "acme").is_some());
        assert!(r.get("e", "beta").is_none());
        assert!(r.get("nope", "acme").is_none());
        let seen: Vec<&str> = r.visible("beta").map(|w| w.name.as_str()).collect();
        assert_eq!(seen, ["text"]);
    }

    #[tokio::test]
    async fn one_code_path_runs_every_work() {
        let r = WorksBuilder::new()
            .work("e", Echo, WorkSettings::default())
            .build()
            .unwrap();
        let call = WorkCall::new(r#"{"text": "ab", "count": 2}"#, "default");
        for name in ["e", "text"] {
            let out = r
                .get(name, "default")
                .unwrap()
                .work
                .perform(&call)
                .await
                .unwrap();
            assert!(out.is_object(), "{name}: {out}");
        }
    }
}
