//! Fair scheduling of evaluations: a bounded queue per context, at most `per_context` of a
//! context's evaluations running at once, and contexts served round-robin by a fixed pool
//! of threads (each with a known stack size and its own engine).
//!
//! So a context that floods gets `busy` once its queue is full and never holds more than
//! `per_context` threads, and a quiet context's request waits behind at most one turn of
//! each busy context, never behind their queues. Never evaluates anything itself: tasks
//! are closures given an [`Evaluator`].

use crate::config::{Limits, Profile};
use crate::error::Error;
use crate::id::ContextId;
use crate::script::{AstCache, Evaluator};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

/// A unit of work; returns `true` when the evaluator must be rebuilt (an engine fault).
pub(crate) type Task = Box<dyn FnOnce(&Evaluator) -> bool + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Task>,
    running: usize,
    ready: bool,
}

#[derive(Default)]
struct State {
    queues: HashMap<ContextId, Queue>,
    ready: VecDeque<ContextId>,
    closed: bool,
}

/// The queues and the pool.
pub(crate) struct Scheduler {
    state: Mutex<State>,
    wake: Condvar,
    queue: usize,
    per_context: usize,
}

impl Scheduler {
    pub(crate) fn new(queue: usize, per_context: usize) -> Scheduler {
        Scheduler {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            queue,
            per_context,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `task` for `context`.
    ///
    /// # Errors
    /// [`Error::Busy`] when the context's queue is full, [`Error::Closed`].
    pub(crate) fn push(&self, context: ContextId, task: Task) -> Result<(), Error> {
        let mut s = self.lock();
        if s.closed {
            return Err(Error::Closed);
        }
        let per_context = self.per_context;
        let q = s.queues.entry(context).or_default();
        if q.jobs.len() >= self.queue {
            return Err(Error::Busy {
                context: context.to_string(),
                queued: q.jobs.len(),
            });
        }
        q.jobs.push_back(task);
        let make_ready = !q.ready && q.running < per_context;
        if make_ready {
            q.ready = true;
            s.ready.push_back(context);
        }
        drop(s);
        self.wake.notify_one();
        Ok(())
    }

    /// (queued, running) of `context`.
    pub(crate) fn load(&self, context: ContextId) -> (usize, usize) {
        self.lock()
            .queues
            .get(&context)
            .map_or((0, 0), |q| (q.jobs.len(), q.running))
    }

    /// Stops the pool: queued tasks are dropped (their callers see the worker closed).
    pub(crate) fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.queues.clear();
        s.ready.clear();
        drop(s);
        self.wake.notify_all();
    }

    /// One pool thread: takes the next ready context's next task, round-robin.
    pub(crate) fn serve(&self, limits: &Limits, profile: Profile, cache: &Arc<AstCache>) {
        let mut evaluator = Evaluator::new(limits, profile, cache.clone());
        loop {
            let (context, task) = {
                let mut s = self.lock();
                loop {
                    if s.closed {
                        return;
                    }
                    if let Some(c) = s.ready.pop_front() {
                        break self.take(&mut s, c);
                    }
                    s = self.wake.wait(s).unwrap_or_else(|p| p.into_inner());
                }
            };
            let Some(task) = task else { continue };
            // The task catches engine panics itself; this is the last line, so a pool thread
            // never dies (a lost task's caller sees the worker closed).
            let reset = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task(&evaluator)))
                .unwrap_or(true);
            if reset {
                evaluator = Evaluator::new(limits, profile, cache.clone());
            }
            let mut s = self.lock();
            let per_context = self.per_context;
            let mut requeue = false;
            let mut remove = false;
            if let Some(q) = s.queues.get_mut(&context) {
                q.running -= 1;
                if !q.jobs.is_empty() && !q.ready && q.running < per_context {
                    q.ready = true;
                    requeue = true;
                }
                remove = q.jobs.is_empty() && q.running == 0;
            }
            if requeue {
                s.ready.push_back(context);
                drop(s);
                self.wake.notify_one();
            } else if remove {
                s.queues.remove(&context);
            }
        }
    }

    fn take(&self, s: &mut State, c: ContextId) -> (ContextId, Option<Task>) {
        let per_context = self.per_context;
        let Some(q) = s.queues.get_mut(&c) else {
            return (c, None);
        };
        q.ready = false;
        let Some(task) = q.jobs.pop_front() else {
            return (c, None);
        };
        q.running += 1;
        let again = !q.jobs.is_empty() && q.running < per_context;
        if again {
            q.ready = true;
            s.ready.push_back(c);
        }
        (c, Some(task))
    }
}
