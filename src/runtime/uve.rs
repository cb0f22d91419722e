//! The UVE stream thread (SPEC §5.1): follows Contrail analytics' UVE stream for the VMIs
//! and hands every change of a VMI's `l2_active` to the scheduler, which polls it at once.
//! The stream only speeds detection up: while it is down (analytics restarting, the alarm
//! generator off and the route answering 404), polling goes on and catches every change.

use super::scheduler::Event;
use crate::plugins::uve_stream::{self, StreamEvent};
use crossbeam_channel::{Receiver, Sender};
use std::time::Duration;

/// Follows the stream of `analytics_url` until `stop` fires or closes.
pub fn run(analytics_url: &str, timeout: Duration, events: Sender<Event>, stop: Receiver<()>) {
    let (mut connected_before, mut warned) = (false, false);
    uve_stream::follow(analytics_url, timeout, &stop, &mut |event| match event {
        StreamEvent::Connected => {
            if connected_before {
                crate::metrics::uve_stream_reconnected();
                log::info!("UVE stream connected again");
            } else {
                log::info!("following the Contrail UVE stream for VMI changes");
            }
            (connected_before, warned) = (true, false);
        }
        StreamEvent::Change(c) => {
            crate::metrics::uve_stream_change();
            let _ = events.send(Event::Uve { fq_name: c.fq_name, l2_active: c.l2_active });
        }
        StreamEvent::Disconnected(why) if why == "stopped" => {}
        StreamEvent::Disconnected(why) => {
            // Once per outage: a stream that stays down retries quietly (debug).
            if warned {
                log::debug!("UVE stream: {why}");
            } else {
                log::warn!("UVE stream: {why}; trying again with backoff (polling goes on)");
                warned = true;
            }
        }
    });
}
