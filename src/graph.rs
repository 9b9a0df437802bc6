//! CUDA graphs: capture the work a closure queues on a stream, replay it with one launch, and
//! update it in place.
//!
//! A [`Graph`] keeps alive every allocation its nodes touch, whoever owns it: the buffers in its
//! resources (`R`), buffers the capture closure borrowed from outside, a plan's workspace. Each
//! replay is ordered like any other work: it waits for pending writes (on other streams) to what
//! it reads and for every pending use of what it writes, and later users of its buffers wait for
//! it. Dropping a buffer, a plan or the graph itself never frees memory a replay still uses.
//! The resources are given back by [`Graph::into_resources`] and can be read through
//! [`Graph::resources`]; they are never handed out mutably, so nothing can be swapped in behind
//! the graph's back (write inputs through buffers kept outside, which the closure borrows).
//!
//! Capture runs on one stream, in the driver's thread-local mode: other threads and streams
//! keep working, ordered as always. Inside the closure, use only the stream it is given. Work
//! that cannot be captured (synchronizing, allocating, copying from or to host memory, a second
//! stream) makes the capture fail with [`Error::Capture`](crate::Error::Capture), and the stream
//! is usable afterwards.
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
use crate::memory::access::{self, Touched, Use};
use crate::stream::Stream;
use cudarc::driver::{result, sys, DriverError};
use std::mem::ManuallyDrop;

/// A captured, instantiated CUDA graph, the resources its work uses, and every allocation its
/// nodes touch.
///
/// ```no_run
/// use hikube_gpu::{ops, Device, DeviceBuffer, Graph};
/// let device = Device::open(0)?;
/// let stream = device.new_stream()?;
/// let x = DeviceBuffer::from_slice(&stream, &[1.0f32; 1024])?;
/// let y = DeviceBuffer::<f32>::zeroed(&stream, 1024)?;
/// // Capture once: the kernels are recorded, not run. The graph owns x and y.
/// let mut graph = Graph::capture(&stream, (x, y), |s, (x, y)| {
///     for _ in 0..10 {
///         ops::axpy(s, 0.5, x, y)?;
///     }
///     Ok(())
/// })?;
/// graph.launch(&stream)?; // ten kernels for the price of one launch
/// graph.launch(&stream)?;
/// let (_, y) = graph.into_resources()?;
/// assert_eq!(y.to_vec(&stream)?[0], 10.0);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub struct Graph<R> {
    device: Device,
    graph: sys::CUgraph,
    exec: sys::CUgraphExec,
    nodes: usize,
    updated_in_place: bool,
    /// What the nodes touch, kept alive for as long as the graph can replay.
    touched: Touched,
    /// The last replay (an update waits for it).
    last_launch: Option<Use>,
    resources: ManuallyDrop<R>,
}

// SAFETY: the CUDA graph handles are only used through `&mut self` (launch, update) or `self`
// (drop), so no two threads touch them at once, as the driver's graph API requires; the touched
// allocations are `Send + Sync`; `R` decides the rest.
unsafe impl<R: Send> Send for Graph<R> {}

impl<R> std::fmt::Debug for Graph<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("device", &self.device.ordinal())
            .field("nodes", &self.nodes)
            .field("allocations", &self.touched.len())
            .field("updated_in_place", &self.updated_in_place)
            .finish()
    }
}

fn capture_error(what: &str, e: DriverError) -> Error {
    Error::Capture {
        reason: format!("{what}: {e}"),
    }
}

/// Ends the crate's capture state on a stream when dropped (on every path).
struct CaptureState<'a>(&'a Stream);

impl CaptureState<'_> {
    fn start(stream: &Stream) -> Result<CaptureState<'_>> {
        if stream.cu().is_null() {
            return Err(Error::Capture {
                reason:
                    "the legacy default stream cannot capture: use a stream from Device::new_stream"
                        .into(),
            });
        }
        if stream.driver_capturing()? || !access::begin_capture(stream)? {
            return Err(Error::Capture {
                reason: "the stream is capturing already".into(),
            });
        }
        Ok(CaptureState(stream))
    }

    /// Ends the capture state (once: `Drop` does it only on the other paths) and returns what
    /// the capture touched.
    fn finish(self) -> Touched {
        let touched = access::end_capture(self.0);
        std::mem::forget(self);
        touched
    }
}

impl Drop for CaptureState<'_> {
    fn drop(&mut self) {
        drop(access::end_capture(self.0));
    }
}

/// Captures what `work` queues on `stream` into a graph (not instantiated), with what it touched.
fn capture_graph<R>(
    stream: &Stream,
    resources: &mut R,
    work: impl FnOnce(&Stream, &mut R) -> Result<()>,
) -> Result<(sys::CUgraph, Touched)> {
    let device = stream.device();
    let state = CaptureState::start(stream)?;
    device.inner.ctx.bind_to_thread()?;
    let cu = stream.cu();
    // SAFETY: `cu` is a live stream of this context; the capture ends below on every path.
    // Thread-local mode: only this thread's unsafe calls (synchronizing, allocating) invalidate
    // the capture; other threads keep working.
    unsafe {
        result::stream::begin_capture(
            cu,
            sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
        )
    }
    .map_err(|e| capture_error("begin capture", e))?;
    let outcome = work(stream, resources);
    // SAFETY: the stream is capturing (begun above); ending returns the graph, or an error when
    // the capture was invalidated, and leaves the stream out of capture mode either way.
    let ended = unsafe { result::stream::end_capture(cu) };
    let touched = state.finish();
    match (outcome, ended) {
        (Ok(()), Ok(graph)) if !graph.is_null() => Ok((graph, touched)),
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
        let (graph, touched) = capture_graph(stream, &mut resources, work)?;
        let exec = instantiate(&device, graph)?;
        Ok(Graph {
            device,
            graph,
            exec,
            nodes: node_count(graph),
            updated_in_place: false,
            touched,
            last_launch: None,
            resources: ManuallyDrop::new(resources),
        })
    }

    /// Replays the graph on `stream` (any stream of its device), after pending writes on other
    /// streams to what it reads and pending uses of what it writes. Not inside a capture.
    pub fn launch(&mut self, stream: &Stream) -> Result<()> {
        self.device.check_same(stream.device())?;
        self.device.inner.ctx.bind_to_thread()?;
        let exec = self.exec;
        let replayed = access::replay(stream, &self.touched, || {
            // SAFETY: `exec` is live; every allocation its nodes touch is kept alive by
            // `self.touched`, and the stream has been ordered after their pending uses.
            Ok(unsafe { result::graph::launch(exec, stream.cu()) }?)
        })?;
        self.last_launch = replayed;
        Ok(())
    }

    /// Number of nodes (kernels, copies, memsets, ...) in the graph.
    pub fn node_count(&self) -> usize {
        self.nodes
    }

    /// Number of distinct allocations the graph's nodes touch (and keep alive).
    pub fn allocation_count(&self) -> usize {
        self.touched.len()
    }

    /// Whether the last [`update`](Self::update) changed the executable graph in place (true) or
    /// had to instantiate it anew because the topology changed (false).
    pub fn updated_in_place(&self) -> bool {
        self.updated_in_place
    }

    /// The resources, read-only. Nothing waits: work on them is ordered after the replays like
    /// any other (reading a buffer back to the host waits for the replays that write it).
    pub fn resources(&self) -> &R {
        &self.resources
    }

    /// Ends the graph and gives the resources back. The driver frees the executable graph once
    /// replays in flight are done; the buffers' own ordering covers those replays.
    pub fn into_resources(mut self) -> Result<R> {
        self.destroy();
        // SAFETY: the resources are taken exactly once: `forget` below keeps `Drop` from
        // touching them again (the driver objects were destroyed above).
        let r = unsafe { ManuallyDrop::take(&mut self.resources) };
        let touched = std::mem::take(&mut self.touched);
        self.last_launch = None;
        // SAFETY: `device` is moved out exactly once; `forget` keeps it from being dropped twice.
        let device = unsafe { std::ptr::read(&self.device) };
        std::mem::forget(self);
        drop((touched, device));
        Ok(r)
    }

    /// Captures `work` again, with new resources (new buffers of the same shape, new scalars),
    /// and updates the executable graph in place when the topology is unchanged
    /// (`cuGraphExecUpdate`); otherwise instantiates the new graph. Waits for the last replay
    /// first (an executable graph is not updated while it runs).
    pub fn update<R2>(
        mut self,
        stream: &Stream,
        mut resources: R2,
        work: impl FnOnce(&Stream, &mut R2) -> Result<()>,
    ) -> Result<Graph<R2>> {
        if let Some(u) = self.last_launch.take() {
            u.marker()?.synchronize()?;
        }
        let device = self.device.clone();
        let (graph, touched) = capture_graph(stream, &mut resources, work)?;
        let mut info = sys::CUgraphExecUpdateResultInfo {
            result: sys::CUgraphExecUpdateResult::CU_GRAPH_EXEC_UPDATE_SUCCESS,
            errorNode: std::ptr::null_mut(),
            errorFromNode: std::ptr::null_mut(),
        };
        // SAFETY: both handles are live and the exec is idle (waited above); on failure the exec
        // is left as it was.
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
            touched,
            last_launch: None,
            resources: ManuallyDrop::new(resources),
        })
    }

    /// Destroys the driver objects (idempotent); errors are recorded on the context.
    fn destroy(&mut self) {
        let ctx = &self.device.inner.ctx;
        let exec = std::mem::replace(&mut self.exec, std::ptr::null_mut());
        if !exec.is_null() {
            // SAFETY: a live exec owned by this graph, no longer launched after this; one in
            // flight is freed by the driver when it completes.
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
        self.destroy();
        // SAFETY: dropped once, here; `into_resources` forgets `self` after taking them. The
        // memory they own is freed only after the replays' uses (their logs hold them), and the
        // allocations only the graph held go with `touched`, after this.
        unsafe { ManuallyDrop::drop(&mut self.resources) };
    }
}
