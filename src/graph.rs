//! CUDA graphs: capture the work a closure queues on a stream, replay it with one launch, and
//! update it in place.
//!
//! A [`Graph`] holds the resources its work reads and writes (`R`: owned buffers, or borrows of
//! them), so the borrow checker keeps them alive and unaliased for as long as the graph can
//! replay: a buffer a graph writes cannot be freed, read or reused elsewhere until the graph is
//! dropped or gives the resources back, and both wait for the last replay first.
//!
//! Capture is exclusive on its device: it synchronizes the device first and, while the closure
//! runs, the crate's per-buffer stream ordering (cudarc's events) is paused, because waits on
//! events from outside a capture are illegal in one. Inside the closure, use only the stream it
//! is given. Work that cannot be captured (synchronizing, allocating, copying to pageable host
//! memory, a second stream that is not joined back) makes the capture fail with
//! [`Error::Capture`](crate::Error::Capture), and the stream is usable afterwards.
//!
//! ```no_run
//! use hikube_gpu::{ops, Device, DeviceBuffer, Graph};
//! let device = Device::open(0)?;
//! let stream = device.new_stream()?;
//! let x = DeviceBuffer::from_slice(&stream, &[1.0f32; 1024])?;
//! let y = DeviceBuffer::from_slice(&stream, &[0.0f32; 1024])?;
//! let mut graph = Graph::capture(&stream, (x, y), |s, (x, y)| {
//!     for _ in 0..100 {
//!         ops::axpy(s, 0.5, x, y)?;
//!     }
//!     Ok(())
//! })?;
//! graph.launch(&stream)?; // 100 kernels, one launch
//! let (_x, y) = graph.into_resources()?;
//! assert_eq!(y.to_vec(&stream)?[0], 50.0);
//! # Ok::<(), hikube_gpu::Error>(())
//! ```

use crate::device::Device;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::stream::Stream;
use cudarc::driver::{result, sys, DriverError};
use std::mem::ManuallyDrop;

/// A captured, instantiated CUDA graph and the resources its work uses.
pub struct Graph<R> {
    device: Device,
    graph: sys::CUgraph,
    exec: sys::CUgraphExec,
    nodes: usize,
    updated_in_place: bool,
    last_launch: Option<Event>,
    resources: ManuallyDrop<R>,
}

// SAFETY: the CUDA graph handles are only used through `&mut self` (launch, update) or `self`
// (drop), so no two threads touch them at once, as the driver's graph API requires; `R` decides
// the rest.
unsafe impl<R: Send> Send for Graph<R> {}

impl<R> std::fmt::Debug for Graph<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("device", &self.device.ordinal())
            .field("nodes", &self.nodes)
            .field("updated_in_place", &self.updated_in_place)
            .finish()
    }
}

fn capture_error(what: &str, e: DriverError) -> Error {
    Error::Capture {
        reason: format!("{what}: {e}"),
    }
}

/// Resumes cudarc's per-buffer event tracking when dropped.
struct TrackingPaused<'a>(&'a Device);

impl Drop for TrackingPaused<'_> {
    fn drop(&mut self) {
        // SAFETY: tracking was enabled before the capture paused it (`pause_tracking` checks).
        unsafe { self.0.inner.ctx.enable_event_tracking() };
    }
}

/// Synchronizes the device and pauses event tracking for a capture.
fn pause_tracking(device: &Device) -> Result<Option<TrackingPaused<'_>>> {
    let ctx = &device.inner.ctx;
    if !ctx.is_event_tracking() {
        return Ok(None);
    }
    // All earlier work on every stream is finished, so no buffer needs an event wait while the
    // capture runs without them.
    device.synchronize()?;
    // SAFETY: the device is idle, and the capture's work is ordered on one stream; tracking is
    // re-enabled by `TrackingPaused`'s drop, on success and failure alike.
    unsafe { ctx.disable_event_tracking() };
    Ok(Some(TrackingPaused(device)))
}

/// Captures what `work` queues on `stream` into a graph (not instantiated).
fn capture_graph<R>(
    stream: &Stream,
    resources: &mut R,
    work: impl FnOnce(&Stream, &mut R) -> Result<()>,
) -> Result<sys::CUgraph> {
    let device = stream.device();
    if stream.raw.cu_stream().is_null() {
        return Err(Error::Capture {
            reason:
                "the legacy default stream cannot capture: use a stream from Device::new_stream"
                    .into(),
        });
    }
    let _paused = pause_tracking(device)?;
    device.inner.ctx.bind_to_thread()?;
    let cu = stream.raw.cu_stream();
    // SAFETY: `cu` is a live stream of this context; the capture ends below on every path.
    unsafe {
        result::stream::begin_capture(cu, sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_GLOBAL)
    }
    .map_err(|e| capture_error("begin capture", e))?;
    let outcome = work(stream, resources);
    // SAFETY: the stream is capturing (begun above); ending returns the graph, or an error when
    // the capture was invalidated, and leaves the stream out of capture mode either way.
    let ended = unsafe { result::stream::end_capture(cu) };
    match (outcome, ended) {
        (Ok(()), Ok(graph)) if !graph.is_null() => Ok(graph),
        (Ok(()), Ok(_)) => Err(Error::Capture {
            reason: "the capture produced no graph".into(),
        }),
        (Ok(()), Err(e)) => Err(capture_error("end capture", e)),
        (Err(e), ended) => {
            if let Ok(graph) = ended {
                if !graph.is_null() {
                    // SAFETY: a graph from this capture, owned by nobody else.
                    device
                        .inner
                        .ctx
                        .record_err(unsafe { result::graph::destroy(graph) });
                }
            }
            Err(match e {
                Error::Capture { .. } => e,
                Error::Driver(d) => capture_error("work during capture", d),
                other => other,
            })
        }
    }
}

/// Instantiates a freshly captured graph; on failure the graph is destroyed.
fn instantiate(device: &Device, graph: sys::CUgraph) -> Result<sys::CUgraphExec> {
    // SAFETY: `graph` is a live graph that the caller just captured and owns.
    match unsafe { result::graph::instantiate(graph, sys::CUgraphInstantiate_flags(0)) } {
        Ok(exec) => Ok(exec),
        Err(e) => {
            // SAFETY: as above; nothing else refers to it.
            device
                .inner
                .ctx
                .record_err(unsafe { result::graph::destroy(graph) });
            Err(capture_error("instantiate", e))
        }
    }
}

fn node_count(graph: sys::CUgraph) -> usize {
    let mut n = 0usize;
    // SAFETY: `graph` is a live graph; a null node array asks for the count only.
    let r = unsafe { sys::cuGraphGetNodes(graph, std::ptr::null_mut(), &mut n) };
    if r == sys::CUresult::CUDA_SUCCESS {
        n
    } else {
        0
    }
}

impl<R> Graph<R> {
    /// Captures the work `work` queues on `stream` (given back to it as its first argument,
    /// with the resources as its second) into a graph ready to replay.
    pub fn capture(
        stream: &Stream,
        mut resources: R,
        work: impl FnOnce(&Stream, &mut R) -> Result<()>,
    ) -> Result<Graph<R>> {
        let device = stream.device().clone();
        let graph = capture_graph(stream, &mut resources, work)?;
        let exec = instantiate(&device, graph)?;
        Ok(Graph {
            device,
            graph,
            exec,
            nodes: node_count(graph),
            updated_in_place: false,
            last_launch: None,
            resources: ManuallyDrop::new(resources),
        })
    }

    /// Replays the graph on `stream` (any stream of its device).
    pub fn launch(&mut self, stream: &Stream) -> Result<()> {
        self.device.check_same(stream.device())?;
        self.device.inner.ctx.bind_to_thread()?;
        // SAFETY: `exec` is live; the resources it uses are held by `self` and cannot be freed
        // or touched elsewhere until the replays recorded in `last_launch` have finished.
        unsafe { result::graph::launch(self.exec, stream.raw.cu_stream()) }?;
        let event = match self.last_launch.take() {
            Some(e) => e,
            None => Event::new(&self.device)?,
        };
        event.record(stream)?;
        self.last_launch = Some(event);
        Ok(())
    }

    /// Number of nodes (kernels, copies, memsets, ...) in the graph.
    pub fn node_count(&self) -> usize {
        self.nodes
    }

    /// Whether the last [`update`](Self::update) changed the executable graph in place (true) or
    /// had to instantiate it anew because the topology changed (false).
    pub fn updated_in_place(&self) -> bool {
        self.updated_in_place
    }

    fn wait_last_launch(&self) -> Result<()> {
        match &self.last_launch {
            Some(e) => e.synchronize(),
            None => Ok(()),
        }
    }

    /// The resources, after the last replay has finished.
    pub fn resources(&mut self) -> Result<&mut R> {
        self.wait_last_launch()?;
        Ok(&mut self.resources)
    }

    /// Ends the graph and gives the resources back, after the last replay has finished.
    pub fn into_resources(mut self) -> Result<R> {
        self.wait_last_launch()?;
        self.last_launch = None;
        self.destroy();
        // SAFETY: the resources are taken exactly once: `forget` below keeps `Drop` from
        // touching them again (the driver objects were destroyed above).
        let r = unsafe { ManuallyDrop::take(&mut self.resources) };
        std::mem::forget(self);
        Ok(r)
    }

    /// Captures `work` again, with new resources (new buffers of the same shape, new scalars),
    /// and updates the executable graph in place when the topology is unchanged
    /// (`cuGraphExecUpdate`); otherwise instantiates the new graph. The old resources are
    /// dropped after the last replay has finished.
    pub fn update<R2>(
        mut self,
        stream: &Stream,
        mut resources: R2,
        work: impl FnOnce(&Stream, &mut R2) -> Result<()>,
    ) -> Result<Graph<R2>> {
        self.wait_last_launch()?;
        let device = self.device.clone();
        let graph = capture_graph(stream, &mut resources, work)?;
        let mut info = sys::CUgraphExecUpdateResultInfo {
            result: sys::CUgraphExecUpdateResult::CU_GRAPH_EXEC_UPDATE_SUCCESS,
            errorNode: std::ptr::null_mut(),
            errorFromNode: std::ptr::null_mut(),
        };
        // SAFETY: both handles are live; on failure the exec is left as it was.
        let in_place = unsafe { sys::cuGraphExecUpdate_v2(self.exec, graph, &mut info) }
            == sys::CUresult::CUDA_SUCCESS;
        let exec = if in_place {
            std::mem::replace(&mut self.exec, std::ptr::null_mut())
        } else {
            instantiate(&device, graph)?
        };
        drop(self);
        Ok(Graph {
            device,
            graph,
            exec,
            nodes: node_count(graph),
            updated_in_place: in_place,
            last_launch: None,
            resources: ManuallyDrop::new(resources),
        })
    }

    /// Destroys the driver objects (idempotent); errors are recorded on the context.
    fn destroy(&mut self) {
        let ctx = &self.device.inner.ctx;
        let exec = std::mem::replace(&mut self.exec, std::ptr::null_mut());
        if !exec.is_null() {
            // SAFETY: a live exec owned by this graph, no longer launched after this.
            ctx.record_err(unsafe { result::graph::exec_destroy(exec) });
        }
        let graph = std::mem::replace(&mut self.graph, std::ptr::null_mut());
        if !graph.is_null() {
            // SAFETY: a live graph owned by this graph object.
            ctx.record_err(unsafe { result::graph::destroy(graph) });
        }
    }
}

impl<R> Drop for Graph<R> {
    fn drop(&mut self) {
        // The resources may be freed below: the GPU must be done with them first.
        let waited = self.wait_last_launch();
        if let Err(Error::Driver(e)) = waited {
            self.device.inner.ctx.record_err::<()>(Err(e));
        }
        self.destroy();
        // SAFETY: dropped once, here; `into_resources` forgets `self` after taking them.
        unsafe { ManuallyDrop::drop(&mut self.resources) };
    }
}
