//! Executes one monitoring job (SPEC §2.3–§3.5): claim it, resolve its params, render its
//! template into objects, reach a verdict, and commit everything in one fenced transaction
//! through the writer. Running a job twice does no harm: every commit is guarded.

use super::verdict::{self, Unverified};
use super::watcher::{Done, Work};
use super::Context;
use crate::job::{Action, Job, Outputs};
use crate::keys;
use crate::plugins::Object;
use crate::records::{self, Mapping};
use crate::store::{Cmp, Kv, Op, StoreError, Txn};
use crate::template;
use serde_json::{Map, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often a commit is retried when the job state changed under us.
const MAX_CONFLICTS: usize = 16;

/// Why a job did not complete.
enum Stop {
    /// Another instance owns the job, or it is gone.
    Dropped(String),
    /// etcd could not be reached: release the claim and try later.
    Unavailable(StoreError),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Stop {
        Stop::Unavailable(e)
    }
}

/// Runs jobs to their end and says, for each, what the watcher should do next. The jobs of
/// a batch go through etcd together: all claims are sent before the first answer is awaited,
/// and all commits likewise, so one thread keeps many jobs in flight.
pub fn run_batch(ctx: &Context, works: &[Work]) -> Vec<Done> {
    let _busy = crate::metrics::busy();
    let jobs: Vec<InFlight> = works.iter().map(|w| InFlight::new(ctx, w)).collect();
    let claims: Vec<_> = jobs.iter().map(|j| ctx.writer.submit(claim_txn(j))).collect();
    // Claimed jobs are executed and their first commit attempt is sent at once.
    let commits: Vec<_> = jobs
        .iter()
        .zip(claims)
        .map(|(j, pending)| {
            let _scope = j.log_scope();
            let claimed = pending.wait().map_err(Stop::from).and_then(|o| {
                if o.applied {
                    Ok(snapshot(o.read)?)
                } else {
                    Err(Stop::Dropped("claimed by another worker, finished or removed".into()))
                }
            });
            claimed.and_then(|snap| {
                let mut result = None;
                let attempt = attempt(ctx, j, snap, &mut result)?;
                Ok((ctx.writer.submit(attempt.txn.clone()), attempt, result))
            })
        })
        .collect();
    jobs.iter()
        .zip(commits)
        .map(|(j, sent)| {
            let _scope = j.log_scope();
            let outcome = sent.and_then(|(pending, attempt, mut result)| {
                if pending.wait()?.applied {
                    attempt.count(j);
                    Ok(())
                } else {
                    retry(ctx, j, &mut result)
                }
            });
            j.done(ctx, outcome)
        })
        .collect()
}

/// One job on its way through a batch.
struct InFlight<'w> {
    work: &'w Work,
    token: String,
    keys: JobKeys,
    /// When its claim was sent.
    started: Instant,
}

impl<'w> InFlight<'w> {
    fn new(ctx: &Context, work: &'w Work) -> InFlight<'w> {
        crate::metrics::job_received(&work.job.action);
        InFlight {
            token: crate::jobs_cmd::new_claim_token(&ctx.instance),
            keys: JobKeys::of(ctx, &work.job),
            started: Instant::now(),
            work,
        }
    }

    fn job(&self) -> &Job {
        &self.work.job
    }

    /// Every line logged until the scope ends names this job and its resource.
    fn log_scope(&self) -> crate::logging::JobScope {
        crate::logging::job_scope(&self.job().id, format!("{}/{}", self.keys.plural, self.job().resource_id))
    }

    /// What the watcher should do next; releases the claim when etcd failed us.
    fn done(&self, ctx: &Context, outcome: Result<(), Stop>) -> Done {
        let id = self.job().id.clone();
        match outcome {
            Ok(()) => Done { id, retry_after: None },
            Err(Stop::Dropped(why)) => {
                log::info!("dropped: {why}");
                Done { id, retry_after: None }
            }
            Err(Stop::Unavailable(e)) => {
                log::warn!("{e}; will retry");
                let release = Txn {
                    when: vec![Cmp::Value(keys::job_working(&id), self.token.clone().into_bytes())],
                    then: vec![Op::delete(keys::job_working(&id))],
                };
                let _ = ctx.writer.apply(release);
                Done { id, retry_after: Some(Duration::from_secs(1)) }
            }
        }
    }
}

/// The keys a job reads before it commits.
struct JobKeys {
    plural: String,
    template_name: String,
    state: String,
    registry: String,
    template: String,
}

impl JobKeys {
    fn of(ctx: &Context, job: &Job) -> JobKeys {
        let plural = ctx.plurals.of(&job.resource_type);
        let template_name = ctx.config().template_name(&job.resource_type);
        JobKeys {
            state: keys::job_state(&plural, &job.resource_id),
            registry: keys::registry(&plural, &job.resource_id),
            template: keys::template(&template_name),
            plural,
            template_name,
        }
    }

    fn reads(&self) -> [&str; 3] {
        [&self.state, &self.registry, &self.template]
    }
}

/// The job state, registry entry and template, read at one revision.
type Snapshot = [Option<Kv>; 3];

fn snapshot(read: Vec<Option<Kv>>) -> Result<Snapshot, StoreError> {
    read.try_into().map_err(|_| StoreError("etcd answered a read of 3 keys with another count".into()))
}

/// The claim: create `/jobs/working/<id>` on our lease if nobody has, the job is still the
/// one we saw, and it is not finished; drop `/jobs/ready/<id>` and read what the job needs in
/// the same step.
fn claim_txn(j: &InFlight) -> Txn {
    let id = &j.job().id;
    let mut then = vec![Op::put_leased(keys::job_working(id), j.token.as_str()), Op::delete(keys::job_ready(id))];
    then.extend(j.keys.reads().map(Op::get));
    Txn {
        when: vec![
            Cmp::CreateRevision(keys::job_working(id), 0),
            Cmp::CreateRevision(keys::job_finished(id), 0),
            Cmp::CreateRevision(keys::job_all(id), j.work.create_revision),
        ],
        then,
    }
}

/// A commit ready to send, and whether it records a failure.
#[derive(Clone)]
struct Attempt {
    txn: Txn,
    failed: bool,
}

impl Attempt {
    fn count(&self, j: &InFlight) {
        crate::metrics::job_committed(&j.job().action, self.failed, j.started);
        log::debug!("committed ({})", if self.failed { "failed" } else { "completed" });
    }
}

/// Builds the fenced commit of a job from what was read. The job itself (params, template,
/// verdict) is executed once; `result` keeps it for later attempts.
fn attempt(
    ctx: &Context,
    j: &InFlight,
    snap: Snapshot,
    result: &mut Option<Result<Executed, String>>,
) -> Result<Attempt, Stop> {
    let (job, jk) = (j.job(), &j.keys);
    let [state_kv, registry, template] = snap;
    let (current, state_rev) = job_state(&jk.state, state_kv);
    let executed = match result {
        Some(r) => r.clone(),
        None => match execute(ctx, job, &jk.template_name, template) {
            Err(Unverified::Interrupted) => {
                return Err(Stop::Unavailable(StoreError("the service is stopping before the job was verified".into())))
            }
            r => result.insert(r.map_err(|e| e.to_string())).clone(),
        },
    };
    let mut txn = Txn {
        when: vec![
            Cmp::Value(keys::job_working(&job.id), j.token.as_bytes().to_vec()),
            Cmp::ModRevision(jk.state.clone(), state_rev),
        ],
        then: Vec::new(),
    };
    let failed = match executed {
        Ok(ex) => {
            commit_success(ctx, job, jk, current, registry.as_ref(), ex, &mut txn)?;
            false
        }
        Err(why) if job.ignore_failure => {
            log::warn!("{why} (on_failure: ignore, completing normally)");
            commit_success(ctx, job, jk, current, registry.as_ref(), Executed::nothing(), &mut txn)?;
            false
        }
        Err(why) => {
            log::error!("{why}");
            commit_failure(ctx, job, jk, current, &why, &mut txn)?;
            true
        }
    };
    Ok(Attempt { txn, failed })
}

/// After a commit did not hold: drop the job if the claim is gone, otherwise read again and
/// commit again (the job state changed under us).
fn retry(ctx: &Context, j: &InFlight, result: &mut Option<Result<Executed, String>>) -> Result<(), Stop> {
    for _ in 1..MAX_CONFLICTS {
        match ctx.store.get(&keys::job_working(&j.job().id))? {
            Some(kv) if kv.value == j.token.as_bytes() => {}
            _ => return Err(Stop::Dropped("the claim was lost before the commit".into())),
        }
        let snap = snapshot(ctx.store.get_many(&j.keys.reads())?)?;
        let attempt = attempt(ctx, j, snap, result)?;
        if ctx.writer.apply(attempt.txn.clone())? {
            attempt.count(j);
            return Ok(());
        }
    }
    Err(Stop::Unavailable(StoreError(format!(
        "the job state {} kept changing during {MAX_CONFLICTS} commit attempts",
        j.keys.state
    ))))
}

/// The job state as read (empty when absent) and its mod revision (0 when absent).
fn job_state(key: &str, kv: Option<Kv>) -> (Map<String, Value>, i64) {
    match kv {
        Some(kv) => match serde_json::from_slice(&kv.value) {
            Ok(Value::Object(m)) => (m, kv.mod_revision),
            _ => {
                log::warn!("{key} does not hold a JSON object; treating it as empty");
                (Map::new(), kv.mod_revision)
            }
        },
        None => (Map::new(), 0),
    }
}

/// What executing a job produced, before anything is written.
#[derive(Clone)]
struct Executed {
    objects: Vec<Object>,
    verdicts: Map<String, Value>,
    mappings: Vec<Mapping>,
}

impl Executed {
    fn nothing() -> Executed {
        Executed { objects: Vec::new(), verdicts: Map::new(), mappings: Vec::new() }
    }
}

/// Params → template → objects → verdicts. The error is one sentence naming the resource,
/// the template and the cause.
fn execute(ctx: &Context, job: &Job, template_name: &str, template: Option<Kv>) -> Result<Executed, Unverified> {
    execute_with(ctx, job, template_name, template).map_err(|e| match e {
        Unverified::Failed(cause) => Unverified::Failed(format!(
            "monitoring {} {} with template {template_name} failed: {cause}",
            job.resource_type, job.resource_id
        )),
        Unverified::Interrupted => Unverified::Interrupted,
    })
}

fn execute_with(ctx: &Context, job: &Job, template_name: &str, template: Option<Kv>) -> Result<Executed, Unverified> {
    let params = job.params().ok_or("the job has no \"params\" list")?;
    let vars = crate::job::resolve_params(&params, &mut EtcdOutputs(ctx))?;
    let source = template_text(template_name, template)?;
    let rendered = template::render_objects(&source, &vars, &ctx.limits).map_err(|e| e.to_string())?;
    let objects = rendered
        .objects
        .iter()
        .map(|(name, props)| Object::check(name, props))
        .collect::<Result<Vec<_>, _>>()?;
    let mappings = rendered
        .db_mappings
        .iter()
        .map(|item| Mapping::from_item(item, &job.resource_type, &job.resource_id))
        .collect::<Result<Vec<_>, _>>()?;
    let verdicts = match job.action {
        Action::Create => verdict::reach(ctx, &objects)?,
        _ => Map::new(),
    };
    Ok(Executed { objects, verdicts, mappings })
}

/// The Jinja2 text of a template; `body` may be an object or a JSON string (gohan's way).
fn template_text(name: &str, kv: Option<Kv>) -> Result<String, String> {
    let key = keys::template(name);
    let kv = kv.ok_or_else(|| format!("the template does not exist ({key})"))?;
    let record: Value =
        serde_json::from_slice(&kv.value).map_err(|e| format!("{key} is not JSON ({e})"))?;
    let body = match record.get("body") {
        Some(Value::String(s)) => serde_json::from_str(s)
            .map_err(|e| format!("{key}: body is a string that is not JSON ({e})"))?,
        Some(b @ Value::Object(_)) => b.clone(),
        _ => return Err(format!("{key} has no body")),
    };
    match body.get("template_file") {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(format!("{key}: body has no template_file text")),
    }
}

/// Heat outputs from the job state of a resource, else from its `/state` record.
struct EtcdOutputs<'a>(&'a Context);

impl Outputs for EtcdOutputs<'_> {
    fn heat_outputs(&mut self, rtype: &str, rid: &str) -> Result<Option<Vec<Value>>, String> {
        let ctx = self.0;
        let plural = ctx.plurals.of(rtype);
        let read = |key: String| -> Result<Option<Value>, String> {
            let kv = ctx.store.get(&key).map_err(|e| e.to_string())?;
            Ok(kv.and_then(|kv| serde_json::from_slice(&kv.value).ok()))
        };
        if let Some(Value::Array(list)) = read(keys::job_state(&plural, rid))?.and_then(|s| s.get("heat_outputs").cloned()) {
            return Ok(Some(list));
        }
        let from_state = read(keys::state(&plural, rid))?
            .and_then(|s| s.pointer("/state/heat_outputs").cloned());
        Ok(match from_state {
            Some(Value::String(text)) => serde_json::from_str::<Vec<Value>>(&text).ok(),
            Some(Value::Array(list)) => Some(list),
            _ => None,
        })
    }
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Adds the writes of a completed job to `txn`.
fn commit_success(
    ctx: &Context,
    job: &Job,
    jk: &JobKeys,
    current: Map<String, Value>,
    registry: Option<&Kv>,
    ex: Executed,
    txn: &mut Txn,
) -> Result<(), StoreError> {
    let (plural, state_key) = (jk.plural.as_str(), jk.state.as_str());
    let mut state = if job.is_first { Map::new() } else { current };
    if job.action == Action::Create {
        state.insert("state_monitoring".into(), Value::Object(ex.verdicts.clone()));
    }
    if job.is_last {
        let worker_state = format!("{}_COMPLETED", job.action.upper());
        let record = records::state_record(&state, &worker_state, &job.version, "");
        txn.then.push(Op::put(keys::state(plural, &job.resource_id), record.to_string()));
        txn.then.push(Op::delete(state_key));
    } else {
        txn.then.push(Op::put(state_key, Value::Object(state).to_string()));
    }
    registry_ops(job, plural, registry, &ex, txn);
    mapping_ops(ctx, job, &ex, txn)?;
    finish_ops(ctx, job, None, txn);
    Ok(())
}

/// Adds the writes of a failed job (on_failure: fail) to `txn`: the `/state` error record and
/// the end of the workflow.
fn commit_failure(
    ctx: &Context,
    job: &Job,
    jk: &JobKeys,
    current: Map<String, Value>,
    why: &str,
    txn: &mut Txn,
) -> Result<(), StoreError> {
    let (plural, state_key) = (jk.plural.as_str(), jk.state.as_str());
    let worker_state = format!("{}_FAILED", job.action.upper());
    let record = records::state_record(&current, &worker_state, &job.version, why);
    txn.then.push(Op::put(keys::state(plural, &job.resource_id), record.to_string()));
    txn.then.push(Op::delete(state_key));
    finish_ops(ctx, job, Some(why), txn);
    if ctx.config().jobs.cleanup {
        let (all, _) = ctx.store.range(keys::JOBS_ALL)?;
        for kv in all {
            let Some(id) = keys::suffix(&kv.key, keys::JOBS_ALL) else { continue };
            let same_workflow = serde_json::from_slice::<Value>(&kv.value)
                .ok()
                .and_then(|v| v.pointer("/1/job_name").and_then(Value::as_str).map(|n| n == job.job_name))
                .unwrap_or(false);
            if id != job.id && same_workflow {
                txn.then.push(Op::delete(kv.key.clone()));
            }
        }
    }
    Ok(())
}

/// Marks the job finished: with cleanup the job disappears, without it the job manager
/// gets `/jobs/finished/<id>`.
fn finish_ops(ctx: &Context, job: &Job, error: Option<&str>, txn: &mut Txn) {
    txn.then.push(Op::delete(keys::job_working(&job.id)));
    if ctx.config().jobs.cleanup {
        txn.then.push(Op::delete(keys::job_all(&job.id)));
    } else {
        let value = match error {
            None => String::new(),
            Some(e) => serde_json::json!({ "error": e }).to_string(),
        };
        txn.then.push(Op::put(keys::job_finished(&job.id), value));
    }
}

/// Registers a create job's objects, or removes the registry entry and `/monitoring` record
/// of a delete job (unless a newer version was registered meanwhile).
fn registry_ops(job: &Job, plural: &str, existing: Option<&Kv>, ex: &Executed, txn: &mut Txn) {
    let key = keys::registry(plural, &job.resource_id);
    let existing_version = existing
        .and_then(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
        .and_then(|v| v.get("version").and_then(Value::as_i64));
    let job_version = job.version.as_i64().unwrap_or(0);
    let newer_registered = existing_version.is_some_and(|v| v > job_version);
    txn.when.push(Cmp::ModRevision(key.clone(), existing.map_or(0, |kv| kv.mod_revision)));
    match job.action {
        Action::Create if !newer_registered => {
            let named: Vec<(String, Map<String, Value>)> =
                ex.objects.iter().map(|o| (o.name.clone(), o.props.clone())).collect();
            let record = records::registry_record(
                &job.resource_type,
                &job.resource_id,
                &job.version,
                &job.tenant_id,
                &named,
            );
            txn.then.push(Op::put(key, record.to_string()));
        }
        Action::Delete if existing.is_some() && !newer_registered => {
            txn.then.push(Op::delete(key));
            txn.then.push(Op::delete(keys::monitoring(plural, &job.resource_id)));
        }
        _ => {}
    }
}

/// Inserts a create job's db_mappings rows, or soft-deletes the live rows a delete job names.
fn mapping_ops(ctx: &Context, job: &Job, ex: &Executed, txn: &mut Txn) -> Result<(), StoreError> {
    if ex.mappings.is_empty() {
        return Ok(());
    }
    let now = now_s();
    match job.action {
        Action::Create => {
            for m in &ex.mappings {
                let id = uuid::Uuid::new_v4().to_string();
                let row = records::mapping_row(&id, &job.tenant_id, m, now);
                txn.then.push(Op::put(keys::resource_mapping(&id), row.to_string()));
            }
        }
        Action::Delete => {
            let (rows, _) = ctx.store.range(keys::RESOURCE_MAPPINGS)?;
            for kv in rows {
                let Ok(mut row) = serde_json::from_slice::<Value>(&kv.value) else { continue };
                if ex.mappings.iter().any(|m| m.matches_live(&row)) {
                    row["deleted"] = Value::from(now);
                    txn.when.push(Cmp::ModRevision(kv.key.clone(), kv.mod_revision));
                    txn.then.push(Op::put(kv.key, row.to_string()));
                }
            }
        }
        Action::Other(_) => {}
    }
    Ok(())
}
