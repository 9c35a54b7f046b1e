//! Progress of an apply: a bar for the environment and a spinner per
//! resource being worked on, on standard error, only when it is a terminal.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use paved_engine::{Outcome, Progress};
use paved_plan::Action;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

pub struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    running: Mutex<HashMap<String, ProgressBar>>,
}

fn verb(action: Action) -> &'static str {
    match action {
        Action::Create => "creating",
        Action::Update => "updating",
        Action::Replace => "replacing",
        Action::Delete => "deleting",
        Action::NoOp => "checking",
    }
}

impl Bars {
    pub fn new(environment: &str) -> Bars {
        let target =
            if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let multi = MultiProgress::with_draw_target(target);
        let total = multi.add(ProgressBar::new(0));
        total.set_style(
            ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {pos}/{len} resources  {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        total.set_prefix(environment.to_string());
        Bars { multi, total, running: Mutex::new(HashMap::new()) }
    }

    pub fn finish(&self) {
        self.total.finish_and_clear();
    }
}

impl Progress for Bars {
    fn planned(&self, total: usize) {
        self.total.set_length(total as u64);
    }

    fn started(&self, id: &str, action: Action) {
        let spinner = self.multi.add(ProgressBar::new_spinner());
        spinner.set_style(
            ProgressStyle::with_template("  {spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        spinner.set_message(format!("{} {id}", verb(action)));
        spinner.enable_steady_tick(Duration::from_millis(120));
        self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), spinner);
    }

    fn finished(&self, id: &str, outcome: &Outcome) {
        if let Some(s) = self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(id) {
            s.finish_and_clear();
            self.multi.remove(&s);
        }
        let _ = self.multi.println(format!("  {}", crate::provision::describe_outcome(id, outcome)));
        self.total.inc(1);
    }
}
