//! A `tracing` layer that keeps every event (target, level, fields) for tests to read.

use std::sync::{Arc, Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// One event: its target, level and fields as strings.
#[derive(Debug, Clone)]
pub struct Record {
    pub target: String,
    pub level: tracing::Level,
    pub fields: Vec<(String, String)>,
    /// `name=value` with every value `Debug`-formatted (strings quoted), in field order.
    pub debug: String,
}

impl Record {
    /// The value of field `name`, if the event has it.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The layer, and the events it has seen.
#[derive(Default, Clone)]
pub struct Events(Arc<Mutex<Vec<Record>>>);

#[derive(Default)]
struct Fields(Vec<(String, String)>, String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
        self.1.push_str(&format!("{}={value:?} ", field.name()));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
        self.1.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl<S: Subscriber> Layer<S> for Events {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        self.0.lock().expect("lock").push(Record {
            target: meta.target().to_owned(),
            level: *meta.level(),
            fields: fields.0,
            debug: fields.1,
        });
    }
}

impl Events {
    /// The events of the process-wide subscriber (a registry with this layer), installed on
    /// first use. Test binaries that use it own the global subscriber.
    pub fn global() -> &'static Events {
        static EVENTS: OnceLock<Events> = OnceLock::new();
        EVENTS.get_or_init(|| {
            let events = Events::default();
            let subscriber = tracing_subscriber::registry().with(events.clone());
            tracing::subscriber::set_global_default(subscriber).expect("global subscriber");
            events
        })
    }

    /// Every event seen so far.
    pub fn all(&self) -> Vec<Record> {
        self.0.lock().expect("lock").clone()
    }

    /// The events with this target.
    pub fn of_target(&self, target: &str) -> Vec<Record> {
        self.all()
            .into_iter()
            .filter(|r| r.target == target)
            .collect()
    }
}
