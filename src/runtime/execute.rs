//! Executes one monitoring job (SPEC §2.3–§3.5): claim it, resolve its params, render its
//! template into objects, reach a verdict, and commit everything in one fenced transaction
//! through the writer. Running a job twice does no harm: every commit is guarded.

use super::verdict;
use super::watcher::{Done, Work};
use super::Context;
use crate::job::{Action, Job, Outputs};
use crate::keys;
use crate::plugins::Object;
use crate::records::{self, Mapping};
use crate::store::{Cmp, Op, StoreError, Txn};
use crate::template;
use serde_json::{Map, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// Runs one job to its end and says what the watcher should do next.
pub fn run(ctx: &Context, work: &Work) -> Done {
    let job = &work.job;
    let token = format!("{}/{}", ctx.instance, uuid::Uuid::new_v4());
    let outcome = claim(ctx, work, &token).and_then(|()| complete(ctx, job, &token));
    match outcome {
        Ok(()) => Done { id: job.id.clone(), retry_after: None },
        Err(Stop::Dropped(why)) => {
            log::info!("job {}: dropped: {why}", job.id);
            Done { id: job.id.clone(), retry_after: None }
        }
        Err(Stop::Unavailable(e)) => {
            log::warn!("job {}: {e}; will retry", job.id);
            let release = Txn {
                when: vec![Cmp::Value(keys::job_working(&job.id), token.into_bytes())],
                then: vec![Op::delete(keys::job_working(&job.id))],
            };
            let _ = ctx.writer.apply(release);
            Done { id: job.id.clone(), retry_after: Some(Duration::from_secs(1)) }
        }
    }
}

/// Takes the job: create `/jobs/working/<id>` on our lease if nobody has, the job is still
/// the one we saw, and it is not finished; drop `/jobs/ready/<id>` in the same step.
fn claim(ctx: &Context, work: &Work, token: &str) -> Result<(), Stop> {
    let id = &work.job.id;
    let txn = Txn {
        when: vec![
            Cmp::CreateRevision(keys::job_working(id), 0),
            Cmp::CreateRevision(keys::job_finished(id), 0),
            Cmp::CreateRevision(keys::job_all(id), work.create_revision),
        ],
        then: vec![Op::put_leased(keys::job_working(id), token), Op::delete(keys::job_ready(id))],
    };
    if ctx.writer.apply(txn)? {
        Ok(())
    } else {
        Err(Stop::Dropped("claimed by another worker, finished or removed".into()))
    }
}

/// Executes and commits, retrying when the job state changed between read and commit.
fn complete(ctx: &Context, job: &Job, token: &str) -> Result<(), Stop> {
    let plural = ctx.plurals.of(&job.resource_type);
    let state_key = keys::job_state(&plural, &job.resource_id);
    let mut result: Option<Result<Executed, String>> = None;
    for _ in 0..MAX_CONFLICTS {
        let (current, state_rev) = read_job_state(ctx, &state_key)?;
        // The job's own work is done once; only the commit is retried on a conflict.
        let executed = match &result {
            Some(r) => r.clone(),
            None => {
                let r = execute(ctx, job);
                result = Some(r.clone());
                r
            }
        };
        let mut txn = Txn {
            when: vec![
                Cmp::Value(keys::job_working(&job.id), token.as_bytes().to_vec()),
                Cmp::ModRevision(state_key.clone(), state_rev),
            ],
            then: Vec::new(),
        };
        let failed = match executed {
            Ok(ex) => {
                commit_success(ctx, job, &plural, &state_key, current, ex, &mut txn)?;
                false
            }
            Err(why) if job.ignore_failure => {
                log::warn!("job {}: {why} (on_failure: ignore, completing normally)", job.id);
                commit_success(ctx, job, &plural, &state_key, current, Executed::nothing(), &mut txn)?;
                false
            }
            Err(why) => {
                log::error!("job {}: {why}", job.id);
                commit_failure(ctx, job, &plural, &state_key, current, &why, &mut txn)?;
                true
            }
        };
        if ctx.writer.apply(txn)? {
            if failed {
                crate::metrics::count_failed();
            } else {
                crate::metrics::count_completed();
            }
            log::debug!("job {}: committed", job.id);
            return Ok(());
        }
        match ctx.store.get(&keys::job_working(&job.id))? {
            Some(kv) if kv.value == token.as_bytes() => continue,
            _ => return Err(Stop::Dropped("the claim was lost before the commit".into())),
        }
    }
    Err(Stop::Unavailable(StoreError(format!(
        "the job state {state_key} kept changing during {MAX_CONFLICTS} commit attempts"
    ))))
}

fn read_job_state(ctx: &Context, key: &str) -> Result<(Map<String, Value>, i64), StoreError> {
    Ok(match ctx.store.get(key)? {
        Some(kv) => match serde_json::from_slice(&kv.value) {
            Ok(Value::Object(m)) => (m, kv.mod_revision),
            _ => {
                log::warn!("{key} does not hold a JSON object; treating it as empty");
                (Map::new(), kv.mod_revision)
            }
        },
        None => (Map::new(), 0),
    })
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
fn execute(ctx: &Context, job: &Job) -> Result<Executed, String> {
    let template_name = ctx.config.template_name(&job.resource_type);
    execute_with(ctx, job, &template_name).map_err(|cause| {
        format!("monitoring {} {} with template {template_name} failed: {cause}", job.resource_type, job.resource_id)
    })
}

fn execute_with(ctx: &Context, job: &Job, template_name: &str) -> Result<Executed, String> {
    let params = job.params().ok_or("the job has no \"params\" list")?;
    let vars = crate::job::resolve_params(&params, &mut EtcdOutputs(ctx))?;
    let source = load_template(ctx, template_name)?;
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
fn load_template(ctx: &Context, name: &str) -> Result<String, String> {
    let key = keys::template(name);
    let kv = ctx
        .store
        .get(&key)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("the template does not exist ({key})"))?;
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
    plural: &str,
    state_key: &str,
    current: Map<String, Value>,
    ex: Executed,
    txn: &mut Txn,
) -> Result<(), StoreError> {
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
    registry_ops(ctx, job, plural, &ex, txn)?;
    mapping_ops(ctx, job, &ex, txn)?;
    finish_ops(ctx, job, None, txn);
    Ok(())
}

/// Adds the writes of a failed job (on_failure: fail) to `txn`: the `/state` error record and
/// the end of the workflow.
fn commit_failure(
    ctx: &Context,
    job: &Job,
    plural: &str,
    state_key: &str,
    current: Map<String, Value>,
    why: &str,
    txn: &mut Txn,
) -> Result<(), StoreError> {
    let worker_state = format!("{}_FAILED", job.action.upper());
    let record = records::state_record(&current, &worker_state, &job.version, why);
    txn.then.push(Op::put(keys::state(plural, &job.resource_id), record.to_string()));
    txn.then.push(Op::delete(state_key));
    finish_ops(ctx, job, Some(why), txn);
    if ctx.config.jobs.cleanup {
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
    if ctx.config.jobs.cleanup {
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
fn registry_ops(ctx: &Context, job: &Job, plural: &str, ex: &Executed, txn: &mut Txn) -> Result<(), StoreError> {
    let key = keys::registry(plural, &job.resource_id);
    let existing = ctx.store.get(&key)?;
    let existing_version = existing
        .as_ref()
        .and_then(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
        .and_then(|v| v.get("version").and_then(Value::as_i64));
    let job_version = job.version.as_i64().unwrap_or(0);
    let newer_registered = existing_version.is_some_and(|v| v > job_version);
    txn.when.push(Cmp::ModRevision(key.clone(), existing.as_ref().map_or(0, |kv| kv.mod_revision)));
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
    Ok(())
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
