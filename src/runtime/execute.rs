//! Executes one monitoring job (SPEC §2.3–§3.5): claim it, resolve its params, render its
//! template into objects, reach a verdict, and commit everything in one fenced transaction
//! through the writer. Running a job twice does no harm: every commit is guarded.
//!
//! An etcd that cannot answer (an election, a timeout, a broken connection) says nothing
//! about the job: the job waits and runs again, and a claim or commit whose outcome is
//! unknown is resolved by reading it back or by the fence. Only etcd's final answers fail a
//! job (§2.4): a commit larger than etcd accepts, a read etcd refuses.

use super::verdict::{self, Unverified};
use super::watcher::{Done, End, Work};
use super::writer::Pending;
use super::Context;
use crate::job::{Action, Job, Outputs, ParamError};
use crate::keys;
use crate::plugins::Object;
use crate::records::{self, Mapping};
use crate::store::{Cause, Cmp, Kv, Op, StoreError, Txn, Unavailable};
use crate::template;
use serde_json::{Map, Value};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// How often a commit is retried when the job state changed under us.
const MAX_CONFLICTS: usize = 16;

/// Why a job did not complete.
enum Stop {
    /// Another instance owns the job, or it is gone.
    Dropped(String),
    /// etcd could not answer, or the service is stopping: release the claim, try later.
    Wait(StoreError),
    /// etcd refused for good even the commit that records the job's failure: the job is
    /// left in place (claim released) until its entry changes.
    Refused(StoreError),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Stop {
        match e.cause {
            Cause::Unavailable(_) => Stop::Wait(e),
            Cause::TooLarge | Cause::Refused => Stop::Refused(e),
        }
    }
}

/// Why executing a job (params, template, verdict) ended without objects.
enum Unexecuted {
    /// The job fails (SPEC §2.4) with this sentence.
    Failed(String),
    /// etcd could not be asked, or the service is stopping: the job runs again later.
    Wait(StoreError),
}

impl From<String> for Unexecuted {
    fn from(why: String) -> Unexecuted {
        Unexecuted::Failed(why)
    }
}

impl From<&str> for Unexecuted {
    fn from(why: &str) -> Unexecuted {
        Unexecuted::Failed(why.to_string())
    }
}

impl From<ParamError> for Unexecuted {
    fn from(e: ParamError) -> Unexecuted {
        match e {
            ParamError::Unresolved(why) => Unexecuted::Failed(why),
            ParamError::Unread(e) => Unexecuted::Wait(e),
        }
    }
}

impl From<Unverified> for Unexecuted {
    fn from(e: Unverified) -> Unexecuted {
        match e {
            Unverified::Failed(why) => Unexecuted::Failed(why),
            Unverified::Interrupted => Unexecuted::Wait(StoreError::new(
                Cause::Unavailable(Unavailable::Stopping),
                "the service is stopping before the job was verified",
            )),
        }
    }
}

/// How a job's claim stands once its claim step is sent.
enum Claim {
    /// A new claim, sent through the writer.
    Sent(Pending),
    /// The watcher found this instance's claim on a job no thread holds: read it back.
    Held,
}

/// Runs jobs to their end and says, for each, what the watcher should do next. The jobs of
/// a batch go through etcd together: all claims are sent before the first answer is awaited,
/// and all commits likewise, so one thread keeps many jobs in flight.
pub fn run_batch(ctx: &Context, works: &[Work]) -> Vec<Done> {
    let _busy = crate::metrics::busy();
    let jobs: Vec<InFlight> = works.iter().map(|w| InFlight::new(ctx, w)).collect();
    let claims: Vec<Claim> = jobs
        .iter()
        .map(|j| match j.work.held {
            None => Claim::Sent(ctx.writer.submit(claim_txn(j))),
            Some(_) => Claim::Held,
        })
        .collect();
    // Claimed jobs are executed and their first commit attempt is sent at once.
    let commits: Vec<_> = jobs
        .iter()
        .zip(claims)
        .map(|(j, claim)| {
            let _scope = j.log_scope();
            let snap = claimed(ctx, j, claim)?;
            let mut result = None;
            let attempt = attempt(ctx, j, snap, &mut result)?;
            Ok((ctx.writer.submit(attempt.txn.clone()), attempt, result))
        })
        .collect();
    jobs.iter()
        .zip(commits)
        .map(|(j, sent)| {
            let _scope = j.log_scope();
            let outcome = sent.and_then(|(pending, attempt, mut result)| {
                if settled(j, &attempt, pending.wait(), &mut result)? {
                    return Ok(());
                }
                retry(ctx, j, &mut result)
            });
            j.done(ctx, outcome)
        })
        .collect()
}

/// The snapshot a claimed job executes with; a claim whose outcome etcd did not say is read
/// back (etcd may have applied it).
fn claimed(ctx: &Context, j: &InFlight, claim: Claim) -> Result<Snapshot, Stop> {
    let answer = match claim {
        Claim::Held => return held(ctx, j, None),
        Claim::Sent(pending) => pending.wait(),
    };
    match answer {
        Ok(o) if o.applied => Ok(snapshot(o.read).map_err(Stop::Wait)?),
        Ok(_) => Err(Stop::Dropped("claimed by another worker, finished or removed".into())),
        Err(e) if e.unavailable().is_some() => {
            log::info!("the claim's outcome is unknown ({e}); reading it back");
            held(ctx, j, Some(e))
        }
        // Refused (this instance may not write its claims): a matter of the service, not of
        // the job, which waits.
        Err(e) => Err(Stop::Wait(e)),
    }
}

/// The snapshot, read at one revision with `/jobs/working/<id>`, when that holds this job's
/// token. `unknown` is the error of a claim that may not have been applied.
fn held(ctx: &Context, j: &InFlight, unknown: Option<StoreError>) -> Result<Snapshot, Stop> {
    let working = keys::job_working(&j.job().id);
    let [state, registry, template] = j.keys.reads();
    let mut read = ctx.store.get_many(&[&working, state, registry, template]).map_err(Stop::Wait)?;
    match read.remove(0) {
        Some(kv) if kv.value == j.token.as_bytes() => Ok(snapshot(read).map_err(Stop::Wait)?),
        None => match unknown {
            Some(e) => Err(Stop::Wait(e)), // not applied: claim again later
            None => Err(Stop::Dropped("this instance's claim is gone".into())),
        },
        Some(_) => Err(Stop::Dropped("claimed by another worker".into())),
    }
}

/// What etcd's answer to a commit means: `Ok(true)` applied, `Ok(false)` a compare did not
/// hold (read again, commit again). A success commit that etcd refuses for good becomes the
/// job's failure (`result`), committed by the next attempt.
fn settled(
    j: &InFlight,
    attempt: &Attempt,
    answer: crate::store::Result<crate::store::Outcome>,
    result: &mut Option<Result<Executed, String>>,
) -> Result<bool, Stop> {
    match answer {
        Ok(o) if o.applied => {
            attempt.count(j);
            Ok(true)
        }
        Ok(_) => Ok(false),
        Err(e) if e.unavailable().is_some() || attempt.failed => Err(Stop::from(e)),
        Err(e) => {
            *result = Some(Err(j.failure(&format!("etcd refused the commit: {e}"))));
            Ok(false)
        }
    }
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
            token: work.held.clone().unwrap_or_else(|| crate::jobs_cmd::new_claim_token(&ctx.instance)),
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

    /// The sentence a failure of this job is recorded with: it names the resource, the
    /// template and the cause.
    fn failure(&self, cause: &str) -> String {
        let job = self.job();
        format!(
            "monitoring {} {} with template {} failed: {cause}",
            job.resource_type, job.resource_id, self.keys.template_name
        )
    }

    /// What the watcher should do next; releases the claim when the job is not done.
    fn done(&self, ctx: &Context, outcome: Result<(), Stop>) -> Done {
        let id = self.job().id.clone();
        let end = match outcome {
            Ok(()) => End::Finished,
            Err(Stop::Dropped(why)) => {
                // Several instances race for every job: losing is normal.
                log::debug!("dropped: {why}");
                End::Dropped
            }
            Err(Stop::Wait(e)) => {
                log::warn!("{e}; the job waits and runs again");
                self.release(ctx);
                End::Wait(e)
            }
            Err(Stop::Refused(e)) => {
                log::error!("{e}; the job is left in place and not executed again until it changes");
                self.release(ctx);
                End::Dropped
            }
        };
        Done { id, end }
    }

    /// Deletes this job's claim if it still holds our token. When etcd cannot answer, the
    /// claim stays on our lease; the watcher then finds it and gives the job back to a pool
    /// thread with the token (or the lease ends and the claim with it).
    fn release(&self, ctx: &Context) {
        let key = keys::job_working(&self.job().id);
        let release = Txn { when: vec![Cmp::Value(key.clone(), self.token.clone().into_bytes())], then: vec![Op::delete(key)] };
        if let Err(e) = ctx.writer.apply(release) {
            log::warn!("releasing the claim: {e}; this instance keeps it and runs the job again");
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
    read.try_into().map_err(|_| {
        StoreError::new(Cause::Unavailable(Unavailable::Connection), "etcd answered a read of 3 keys with another count")
    })
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
/// verdict) is executed once; `result` keeps it for later attempts. A success commit that
/// etcd could not take (larger than its request limit, or a read it refuses) turns into the
/// job's failure.
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
            Err(Unexecuted::Wait(e)) => return Err(Stop::Wait(e)),
            Err(Unexecuted::Failed(why)) => result.insert(Err(j.failure(&why))).clone(),
            Ok(ex) => result.insert(Ok(ex)).clone(),
        },
    };
    let limit = ctx.config().etcd.max_request_bytes;
    let fenced = || Txn {
        when: vec![
            Cmp::Value(keys::job_working(&job.id), j.token.as_bytes().to_vec()),
            Cmp::ModRevision(jk.state.clone(), state_rev),
        ],
        then: Vec::new(),
    };
    let why = match executed {
        Ok(ex) => {
            let mut txn = fenced();
            match commit_success(ctx, job, jk, current.clone(), registry.as_ref(), ex, &mut txn) {
                Ok(()) if txn.size() <= limit => return Ok(Attempt { txn, failed: false }),
                Ok(()) => j.failure(&too_large(txn.size(), limit)),
                Err(e) if e.unavailable().is_some() => return Err(Stop::Wait(e)),
                Err(e) => j.failure(&e.to_string()),
            }
        }
        Err(why) => why,
    };
    *result = Some(Err(why.clone()));
    if job.ignore_failure {
        log::warn!("{why} (on_failure: ignore, completing normally)");
        let mut txn = fenced();
        commit_success(ctx, job, jk, current, registry.as_ref(), Executed::nothing(), &mut txn)?;
        return Ok(Attempt { txn, failed: false });
    }
    log::error!("{why}");
    let mut txn = fenced();
    commit_failure(ctx, job, jk, &current, &why, &mut txn)?;
    if txn.size() > limit {
        // The job state kept in the error record (written by others) is what is too large.
        txn = fenced();
        commit_failure(ctx, job, jk, &Map::new(), &why, &mut txn)?;
    }
    if txn.size() > limit {
        return Err(Stop::Refused(StoreError::new(Cause::TooLarge, too_large(txn.size(), limit))));
    }
    Ok(Attempt { txn, failed: true })
}

fn too_large(size: usize, limit: usize) -> String {
    format!("its commit would send {size} bytes to etcd, more than it accepts ({limit} bytes, etcd.max_request_bytes)")
}

/// After a commit did not hold: drop the job if the claim is gone, otherwise read again and
/// commit again (the job state changed under us).
fn retry(ctx: &Context, j: &InFlight, result: &mut Option<Result<Executed, String>>) -> Result<(), Stop> {
    for _ in 1..MAX_CONFLICTS {
        match ctx.store.get(&keys::job_working(&j.job().id)).map_err(Stop::Wait)? {
            Some(kv) if kv.value == j.token.as_bytes() => {}
            _ => return Err(Stop::Dropped("the claim was lost before the commit".into())),
        }
        let snap = snapshot(ctx.store.get_many(&j.keys.reads()).map_err(Stop::Wait)?).map_err(Stop::Wait)?;
        let attempt = attempt(ctx, j, snap, result)?;
        if settled(j, &attempt, ctx.writer.apply_outcome(attempt.txn.clone()), result)? {
            return Ok(());
        }
    }
    Err(Stop::Wait(StoreError::new(
        Cause::Unavailable(Unavailable::Contention),
        format!("the job state {} kept changing during {MAX_CONFLICTS} commit attempts", j.keys.state),
    )))
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

/// Params → template → objects → verdicts. A failure's sentence names the cause; the
/// caller adds the resource and the template.
fn execute(ctx: &Context, job: &Job, template_name: &str, template: Option<Kv>) -> Result<Executed, Unexecuted> {
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
    fn heat_outputs(&mut self, rtype: &str, rid: &str) -> Result<Option<Vec<Value>>, StoreError> {
        let ctx = self.0;
        let plural = ctx.plurals.of(rtype);
        let read = |key: String| -> Result<Option<Value>, StoreError> {
            let kv = ctx.store.get(&key)?;
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
    current: &Map<String, Value>,
    why: &str,
    txn: &mut Txn,
) -> Result<(), StoreError> {
    let (plural, state_key) = (jk.plural.as_str(), jk.state.as_str());
    let worker_state = format!("{}_FAILED", job.action.upper());
    let record = records::state_record(current, &worker_state, &job.version, why);
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
