//! Training on many processes: data parallelism with CLIP's loss over the
//! global batch.
//!
//! Each process (a *rank*) runs the whole model on its own rows of the
//! global batch. [`Ranks::from_env`] reads the rank and the world size from
//! the launcher (`srun`, `mpirun`, `torchrun`); [`connect`] opens the
//! [`Collective`] that moves data between ranks: [`Local`] for a world of
//! one, Open MPI (feature `mpi`) for CPU ranks, NCCL (feature `cuda`) for
//! GPU ranks, whose values stay in GPU memory (MPI starts NCCL: it hands
//! rank 0's NCCL id to the others).
//!
//! The loss sees every rank's features, as OpenCLIP's `gather_with_grad`
//! does: [`gather_with_grad`] concatenates the ranks' rows in rank order,
//! and its backward hands each rank the sum over ranks of the gradient
//! of its own rows (a reduce-scatter). [`clip_loss`] then computes either
//! the whole global loss on every rank, or with `local_loss` (OpenCLIP's
//! `--local-loss`) only this rank's rows against every column; after
//! [`average_gradients`] (an all-reduce over ranks, divided by the world
//! size) both give every rank exactly the gradient of the one-process
//! loss over the global batch:
//!
//! - whole loss L on every rank: rank s receives W · ∂L/∂f_s from the
//!   reduce-scatter, and the average over ranks of W · ∂L/∂f_s · ∂f_s/∂θ
//!   is ∂L/∂θ;
//! - local loss L_r (rank r's rows; L = the mean of L_r over ranks when
//!   the ranks' batches are equal): rank s receives Σ_r ∂L_r/∂f_s, and
//!   the average over ranks of Σ_r ∂L_r/∂f_s · ∂f_s/∂θ is ∂L/∂θ.
//!
//! With identical initial weights (a seed) and identical averaged
//! gradients, every rank's weights stay identical after each step.

use std::sync::Arc;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor, Var, bail};

use crate::model::{contrastive_loss, layers};

#[cfg(feature = "cuda")]
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView};
#[cfg(feature = "cuda")]
use candle_core::cuda_backend::{CudaDevice, CudaStorage, WrapErr};

/// This process's place among the processes of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranks {
    /// 0 ..= world - 1.
    pub rank: usize,
    /// Processes in the job.
    pub world: usize,
    /// The rank among the processes on this machine (which GPU to take).
    pub local_rank: usize,
}

/// The variables launchers set, in the order read: (rank, world size,
/// local rank). torchrun's first, then Open MPI's (an `mpirun` inside a
/// Slurm allocation also inherits the allocation's `SLURM_*`), MPICH's
/// and Intel MPI's, and Slurm's (`srun`); the same names OpenCLIP reads
/// (`open_clip_train/distributed.py`).
const LAUNCHERS: [(&str, &str, &str); 4] = [
    ("RANK", "WORLD_SIZE", "LOCAL_RANK"),
    (
        "OMPI_COMM_WORLD_RANK",
        "OMPI_COMM_WORLD_SIZE",
        "OMPI_COMM_WORLD_LOCAL_RANK",
    ),
    ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),
    ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),
];

impl Ranks {
    /// A world of one.
    pub fn single() -> Ranks {
        Ranks {
            rank: 0,
            world: 1,
            local_rank: 0,
        }
    }

    /// The ranks the launcher gave this process, from the environment (see
    /// [`Ranks::from_vars`]); a world of one where no launcher set them.
    ///
    /// # Errors
    /// A variable that is not a number, or a rank outside the world.
    pub fn from_env() -> std::result::Result<Ranks, String> {
        Ranks::from_vars(|k| std::env::var(k).ok())
    }

    /// The ranks from the first launcher whose rank and world size `var`
    /// has: torchrun's `RANK`/`WORLD_SIZE`/`LOCAL_RANK`, Open MPI's
    /// `OMPI_COMM_WORLD_*`, `PMI_RANK`/`PMI_SIZE`, Slurm's
    /// `SLURM_PROCID`/`SLURM_NTASKS`/`SLURM_LOCALID`. A missing local
    /// rank is 0.
    ///
    /// # Errors
    /// A variable that is not a number, or a rank outside the world.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> std::result::Result<Ranks, String> {
        let number = |k: &str| -> std::result::Result<Option<usize>, String> {
            match var(k) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{k}={v:?} is not a number")),
            }
        };
        for (rank, world, local) in LAUNCHERS {
            let (Some(r), Some(w)) = (number(rank)?, number(world)?) else {
                continue;
            };
            if w == 0 || r >= w {
                return Err(format!("{rank}={r} is not a rank of {world}={w}"));
            }
            return Ok(Ranks {
                rank: r,
                world: w,
                local_rank: number(local)?.unwrap_or(0),
            });
        }
        Ok(Ranks::single())
    }
}

/// Moves f32 values between the ranks of a job. Every rank calls the same
/// methods in the same order with buffers of the same length; a call
/// returns when every rank has made it.
pub trait Collective: Send + Sync {
    /// This rank.
    fn rank(&self) -> usize;

    /// Ranks in the job.
    fn world(&self) -> usize;

    /// Replaces `values` with their element-wise sum over ranks.
    ///
    /// # Errors
    /// The transport's.
    fn all_reduce_sum(&self, values: &mut [f32]) -> Result<()>;

    /// Replaces `values` with their element-wise sum over ranks (stream
    /// positions and other counts, exact).
    ///
    /// # Errors
    /// The transport's.
    fn all_reduce_sum_u64(&self, values: &mut [u64]) -> Result<()>;

    /// Every rank's `local` (equal lengths), concatenated in rank order.
    ///
    /// # Errors
    /// The transport's.
    fn all_gather(&self, local: &[f32]) -> Result<Vec<f32>>;

    /// The element-wise sum over ranks of `full` (a length that the world
    /// size divides), and of it this rank's block: the `full.len() /
    /// world` values from `rank · full.len() / world` on.
    ///
    /// # Errors
    /// The transport's.
    fn reduce_scatter_sum(&self, full: &[f32]) -> Result<Vec<f32>>;

    /// [`Collective::all_reduce_sum`] of values in the memory of GPU
    /// `device`, the sum there too. Through host memory, unless the
    /// backend moves GPU memory itself (NCCL).
    ///
    /// # Errors
    /// CUDA's, or the transport's.
    #[cfg(feature = "cuda")]
    fn all_reduce_sum_cuda(
        &self,
        values: &CudaView<'_, f32>,
        device: &CudaDevice,
    ) -> Result<CudaSlice<f32>> {
        through_host(device, values, |mut v| {
            self.all_reduce_sum(&mut v)?;
            Ok(v)
        })
    }

    /// [`Collective::all_gather`] in GPU memory: see
    /// [`Collective::all_reduce_sum_cuda`].
    ///
    /// # Errors
    /// CUDA's, or the transport's.
    #[cfg(feature = "cuda")]
    fn all_gather_cuda(
        &self,
        local: &CudaView<'_, f32>,
        device: &CudaDevice,
    ) -> Result<CudaSlice<f32>> {
        through_host(device, local, |v| self.all_gather(&v))
    }

    /// [`Collective::reduce_scatter_sum`] in GPU memory: see
    /// [`Collective::all_reduce_sum_cuda`].
    ///
    /// # Errors
    /// CUDA's, or the transport's.
    #[cfg(feature = "cuda")]
    fn reduce_scatter_sum_cuda(
        &self,
        full: &CudaView<'_, f32>,
        device: &CudaDevice,
    ) -> Result<CudaSlice<f32>> {
        through_host(device, full, |v| self.reduce_scatter_sum(&v))
    }
}

/// `op` applied to `values` copied to host memory, its result copied back
/// to `device`.
#[cfg(feature = "cuda")]
fn through_host(
    device: &CudaDevice,
    values: &CudaView<'_, f32>,
    op: impl FnOnce(Vec<f32>) -> Result<Vec<f32>>,
) -> Result<CudaSlice<f32>> {
    let stream = device.cuda_stream();
    let host = stream.clone_dtoh(values).w()?;
    stream.clone_htod(&op(host)?).w()
}

/// The collective of a world of one: every operation returns its input.
#[derive(Debug, Clone, Copy, Default)]
pub struct Local;

impl Collective for Local {
    fn rank(&self) -> usize {
        0
    }

    fn world(&self) -> usize {
        1
    }

    fn all_reduce_sum(&self, _values: &mut [f32]) -> Result<()> {
        Ok(())
    }

    fn all_reduce_sum_u64(&self, _values: &mut [u64]) -> Result<()> {
        Ok(())
    }

    fn all_gather(&self, local: &[f32]) -> Result<Vec<f32>> {
        Ok(local.to_vec())
    }

    fn reduce_scatter_sum(&self, full: &[f32]) -> Result<Vec<f32>> {
        Ok(full.to_vec())
    }
}

/// A collective that counts the time spent in its calls: moving data, and
/// waiting for the slowest rank to arrive.
pub struct Timed {
    inner: Arc<dyn Collective>,
    nanos: std::sync::atomic::AtomicU64,
}

impl Timed {
    /// `inner`, timed.
    pub fn new(inner: Arc<dyn Collective>) -> Timed {
        Timed {
            inner,
            nanos: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Seconds spent in calls so far.
    pub fn seconds(&self) -> f64 {
        self.nanos.load(std::sync::atomic::Ordering::Relaxed) as f64 * 1e-9
    }

    /// [`Timed::time`] of a call that queues work on `device`'s stream,
    /// until that work is done (the host waits on it anyway).
    #[cfg(feature = "cuda")]
    fn time_on_gpu(
        &self,
        device: &CudaDevice,
        f: impl FnOnce(&dyn Collective) -> Result<CudaSlice<f32>>,
    ) -> Result<CudaSlice<f32>> {
        self.time(|c| {
            let out = f(c)?;
            device.cuda_stream().synchronize().w()?;
            Ok(out)
        })
    }

    fn time<R>(&self, f: impl FnOnce(&dyn Collective) -> R) -> R {
        let start = std::time::Instant::now();
        let r = f(&*self.inner);
        let spent = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos
            .fetch_add(spent, std::sync::atomic::Ordering::Relaxed);
        r
    }
}

impl Collective for Timed {
    fn rank(&self) -> usize {
        self.inner.rank()
    }

    fn world(&self) -> usize {
        self.inner.world()
    }

    fn all_reduce_sum(&self, values: &mut [f32]) -> Result<()> {
        self.time(|c| c.all_reduce_sum(values))
    }

    fn all_reduce_sum_u64(&self, values: &mut [u64]) -> Result<()> {
        self.time(|c| c.all_reduce_sum_u64(values))
    }

    fn all_gather(&self, local: &[f32]) -> Result<Vec<f32>> {
        self.time(|c| c.all_gather(local))
    }

    fn reduce_scatter_sum(&self, full: &[f32]) -> Result<Vec<f32>> {
        self.time(|c| c.reduce_scatter_sum(full))
    }

    #[cfg(feature = "cuda")]
    fn all_reduce_sum_cuda(
        &self,
        values: &CudaView<'_, f32>,
        device: &CudaDevice,
    ) -> Result<CudaSlice<f32>> {
        self.time_on_gpu(device, |c| c.all_reduce_sum_cuda(values, device))
    }

    #[cfg(feature = "cuda")]
    fn all_gather_cuda(
        &self,
        local: &CudaView<'_, f32>,
        device: &CudaDevice,
    ) -> Result<CudaSlice<f32>> {
        self.time_on_gpu(device, |c| c.all_gather_cuda(local, device))
    }

    #[cfg(feature = "cuda")]
    fn reduce_scatter_sum_cuda(
        &self,
        full: &CudaView<'_, f32>,
        device: &CudaDevice,
    ) -> Result<CudaSlice<f32>> {
        self.time_on_gpu(device, |c| c.reduce_scatter_sum_cuda(full, device))
    }
}

/// Which transport the ranks' collectives take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// NCCL on a GPU, Open MPI on a CPU; nothing in a world of one.
    #[default]
    Auto,
    /// Open MPI (feature `mpi`), through host memory.
    Mpi,
    /// NCCL (feature `cuda`), in GPU memory; started through Open MPI when
    /// there is more than one rank. Also in a world of one, where it
    /// checks NCCL against the one-process run.
    Nccl,
}

/// The collective for `ranks` on `device` (each rank's own GPU: `cuda:N`
/// with N its local rank), by `backend`: with [`Backend::Auto`], [`Local`]
/// for a world of one, NCCL on a GPU, Open MPI on a CPU.
///
/// # Errors
/// A backend this build lacks (features `mpi`, `cuda`); NCCL on a CPU;
/// MPI that cannot start, or whose world differs from the launcher's
/// variables (`srun` without `--mpi=pmix` starts each process as a world
/// of its own); NCCL that cannot start.
pub fn connect(ranks: Ranks, device: &Device, backend: Backend) -> Result<Arc<dyn Collective>> {
    let nccl = match backend {
        Backend::Auto if ranks.world == 1 => return Ok(Arc::new(Local)),
        Backend::Auto => device.is_cuda(),
        Backend::Mpi => false,
        Backend::Nccl => true,
    };
    if nccl {
        return start_nccl(ranks, device);
    }
    if ranks.world == 1 {
        return Ok(Arc::new(Local));
    }
    start_mpi(ranks)
}

/// Open MPI, checked against the launcher's variables.
fn start_mpi(ranks: Ranks) -> Result<Arc<dyn Collective>> {
    #[cfg(feature = "mpi")]
    {
        let m = mpi_backend::Mpi::start()?;
        if (m.rank(), m.world()) != (ranks.rank, ranks.world) {
            bail!(
                "the launcher says rank {} of {}, but MPI started rank {} of {}: launch with `mpirun -n N` or `srun --mpi=pmix -n N`",
                ranks.rank,
                ranks.world,
                m.rank(),
                m.world()
            );
        }
        Ok(Arc::new(m))
    }
    #[cfg(not(feature = "mpi"))]
    bail!(
        "this is rank {} of {}, but wit was built without MPI: build it with `--features mpi` (Open MPI's libopenmpi-dev and libclang-dev installed)",
        ranks.rank,
        ranks.world
    )
}

/// NCCL on this rank's GPU, its id handed out by Open MPI.
fn start_nccl(ranks: Ranks, device: &Device) -> Result<Arc<dyn Collective>> {
    #[cfg(feature = "cuda")]
    {
        let Device::Cuda(gpu) = device else {
            bail!("NCCL moves GPU memory: use --device cuda, or --collective mpi on a CPU");
        };
        let bootstrap = if ranks.world > 1 {
            Some(start_mpi(ranks)?)
        } else {
            None
        };
        let n = nccl_backend::Nccl::start(gpu, ranks, bootstrap.as_deref())?;
        Ok(Arc::new(n))
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (ranks, device);
        bail!("NCCL needs a build with `--features cuda` (../shared/cuda/README.md)")
    }
}

#[cfg(feature = "cuda")]
mod nccl_backend {
    use std::sync::Mutex;

    use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView};
    use candle_core::cuda_backend::cudarc::nccl::safe::{Comm, Id, ReduceOp};
    use candle_core::cuda_backend::{CudaDevice, WrapErr};
    use candle_core::{Result, bail};

    use super::{Collective, Ranks};

    /// An NCCL communicator over the ranks' GPUs, on the GPU's stream (so
    /// its calls queue behind Candle's kernels and before what follows).
    pub struct Nccl {
        comm: Comm,
        device: CudaDevice,
        lock: Mutex<()>,
    }

    // SAFETY: a communicator may be used from any thread, one call at a
    // time (NCCL's rule); every call below holds `lock`.
    unsafe impl Send for Nccl {}
    unsafe impl Sync for Nccl {}

    fn nccl_error(e: impl std::fmt::Debug) -> candle_core::Error {
        candle_core::Error::Msg(format!("NCCL: {e:?}"))
    }

    impl Nccl {
        /// Rank `ranks.rank`'s communicator on `device`. NCCL's ranks meet
        /// through an id that rank 0 makes: `bootstrap` (Open MPI over the
        /// same ranks) hands it to every rank; a world of one needs none.
        pub fn start(
            device: &CudaDevice,
            ranks: Ranks,
            bootstrap: Option<&dyn Collective>,
        ) -> Result<Nccl> {
            let id = match bootstrap {
                None if ranks.world == 1 => Id::new().map_err(nccl_error)?,
                None => bail!("NCCL over {} ranks needs MPI to start", ranks.world),
                Some(b) => {
                    // Rank 0's 128 bytes as 16 words, zeros elsewhere: the
                    // sum over ranks is rank 0's id on every rank.
                    let mut words = [0u64; 16];
                    if ranks.rank == 0 {
                        let id = Id::new().map_err(nccl_error)?;
                        let bytes: Vec<u8> = id.internal().iter().map(|c| *c as u8).collect();
                        for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
                            *w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
                        }
                    }
                    b.all_reduce_sum_u64(&mut words)?;
                    let mut internal = [0 as std::ffi::c_char; 128];
                    for (i, byte) in words.iter().flat_map(|w| w.to_le_bytes()).enumerate() {
                        internal[i] = byte as std::ffi::c_char;
                    }
                    Id::uninit(internal)
                }
            };
            let comm = Comm::from_rank(device.cuda_stream(), ranks.rank, ranks.world, id)
                .map_err(nccl_error)?;
            Ok(Nccl {
                comm,
                device: device.clone(),
                lock: Mutex::new(()),
            })
        }

        fn one_at_a_time(&self) -> std::sync::MutexGuard<'_, ()> {
            self.lock.lock().expect("no panics holding the NCCL lock")
        }
    }

    impl Collective for Nccl {
        fn rank(&self) -> usize {
            self.comm.rank()
        }

        fn world(&self) -> usize {
            self.comm.world_size()
        }

        fn all_reduce_sum(&self, values: &mut [f32]) -> Result<()> {
            let stream = self.device.cuda_stream();
            let on_gpu = stream.clone_htod(values).w()?;
            let sum = self.all_reduce_sum_cuda(&on_gpu.slice(..), &self.device)?;
            stream.memcpy_dtoh(&sum, values).w()
        }

        fn all_reduce_sum_u64(&self, values: &mut [u64]) -> Result<()> {
            let stream = self.device.cuda_stream();
            let mut on_gpu = stream.clone_htod(values).w()?;
            {
                let _one = self.one_at_a_time();
                self.comm
                    .all_reduce_in_place(&mut on_gpu, &ReduceOp::Sum)
                    .map_err(nccl_error)?;
            }
            stream.memcpy_dtoh(&on_gpu, values).w()
        }

        fn all_gather(&self, local: &[f32]) -> Result<Vec<f32>> {
            let stream = self.device.cuda_stream();
            let on_gpu = stream.clone_htod(local).w()?;
            let all = self.all_gather_cuda(&on_gpu.slice(..), &self.device)?;
            stream.clone_dtoh(&all).w()
        }

        fn reduce_scatter_sum(&self, full: &[f32]) -> Result<Vec<f32>> {
            let stream = self.device.cuda_stream();
            let on_gpu = stream.clone_htod(full).w()?;
            let mine = self.reduce_scatter_sum_cuda(&on_gpu.slice(..), &self.device)?;
            stream.clone_dtoh(&mine).w()
        }

        fn all_reduce_sum_cuda(
            &self,
            values: &CudaView<'_, f32>,
            _device: &CudaDevice,
        ) -> Result<CudaSlice<f32>> {
            let mut out = self
                .device
                .cuda_stream()
                .alloc_zeros::<f32>(values.len())
                .w()?;
            let _one = self.one_at_a_time();
            self.comm
                .all_reduce(values, &mut out, &ReduceOp::Sum)
                .map_err(nccl_error)?;
            Ok(out)
        }

        fn all_gather_cuda(
            &self,
            local: &CudaView<'_, f32>,
            _device: &CudaDevice,
        ) -> Result<CudaSlice<f32>> {
            let n = local.len() * self.world();
            let mut out = self.device.cuda_stream().alloc_zeros::<f32>(n).w()?;
            let _one = self.one_at_a_time();
            self.comm.all_gather(local, &mut out).map_err(nccl_error)?;
            Ok(out)
        }

        fn reduce_scatter_sum_cuda(
            &self,
            full: &CudaView<'_, f32>,
            _device: &CudaDevice,
        ) -> Result<CudaSlice<f32>> {
            let world = self.world();
            if !full.len().is_multiple_of(world) {
                bail!("reduce-scatter of {} values over {world} ranks", full.len());
            }
            let mut out = self
                .device
                .cuda_stream()
                .alloc_zeros::<f32>(full.len() / world)
                .w()?;
            let _one = self.one_at_a_time();
            self.comm
                .reduce_scatter(full, &mut out, &ReduceOp::Sum)
                .map_err(nccl_error)?;
            Ok(out)
        }
    }
}

#[cfg(feature = "mpi")]
mod mpi_backend {
    use std::sync::Mutex;

    use candle_core::{Result, bail};
    use mpi::collective::SystemOperation;
    use mpi::environment::{Threading, Universe};
    use mpi::topology::SimpleCommunicator;
    use mpi::traits::*;

    /// Open MPI's world communicator, its calls one at a time.
    pub struct Mpi {
        world: SimpleCommunicator,
        lock: Mutex<()>,
        rank: usize,
        size: usize,
        // Last: finalises MPI when dropped, after the communicator.
        _universe: Universe,
    }

    // SAFETY: MPI is started with MPI_THREAD_SERIALIZED (checked), which
    // allows calls from any thread as long as no two run at once; every
    // call below holds `lock`.
    unsafe impl Send for Mpi {}
    unsafe impl Sync for Mpi {}

    impl Mpi {
        pub fn start() -> Result<Mpi> {
            let Some((universe, level)) = mpi::initialize_with_threading(Threading::Serialized)
            else {
                bail!("MPI was started already in this process");
            };
            if level < Threading::Serialized {
                bail!(
                    "this MPI library supports threads only up to {level:?}; wit needs Serialized"
                );
            }
            let world = universe.world();
            let (rank, size) = (world.rank() as usize, world.size() as usize);
            Ok(Mpi {
                world,
                lock: Mutex::new(()),
                rank,
                size,
                _universe: universe,
            })
        }
    }

    impl super::Collective for Mpi {
        fn rank(&self) -> usize {
            self.rank
        }

        fn world(&self) -> usize {
            self.size
        }

        fn all_reduce_sum(&self, values: &mut [f32]) -> Result<()> {
            let _one = self.lock.lock().expect("no panics holding the MPI lock");
            let mut sum = vec![0f32; values.len()];
            self.world
                .all_reduce_into(&values[..], &mut sum[..], SystemOperation::sum());
            values.copy_from_slice(&sum);
            Ok(())
        }

        fn all_reduce_sum_u64(&self, values: &mut [u64]) -> Result<()> {
            let _one = self.lock.lock().expect("no panics holding the MPI lock");
            let mut sum = vec![0u64; values.len()];
            self.world
                .all_reduce_into(&values[..], &mut sum[..], SystemOperation::sum());
            values.copy_from_slice(&sum);
            Ok(())
        }

        fn all_gather(&self, local: &[f32]) -> Result<Vec<f32>> {
            let _one = self.lock.lock().expect("no panics holding the MPI lock");
            let mut out = vec![0f32; local.len() * self.size];
            self.world.all_gather_into(local, &mut out[..]);
            Ok(out)
        }

        fn reduce_scatter_sum(&self, full: &[f32]) -> Result<Vec<f32>> {
            if !full.len().is_multiple_of(self.size) {
                bail!(
                    "reduce-scatter of {} values over {} ranks",
                    full.len(),
                    self.size
                );
            }
            let _one = self.lock.lock().expect("no panics holding the MPI lock");
            let mut out = vec![0f32; full.len() / self.size];
            self.world
                .reduce_scatter_block_into(full, &mut out[..], SystemOperation::sum());
            Ok(out)
        }
    }
}

/// Every rank's rows of `t` (n x ..., the same shape on every rank),
/// concatenated in rank order: (world · n) x ...; the gradient flows back
/// to the rank that made each row, summed over the ranks that used it
/// (OpenCLIP's `gather_with_grad`). f32.
///
/// # Errors
/// A tensor that is not f32, or the transport's.
pub fn gather_with_grad(t: &Tensor, c: &Arc<dyn Collective>) -> Result<Tensor> {
    if c.world() == 1 {
        return Ok(t.clone());
    }
    t.contiguous()?.apply_op1(WithGrad {
        c: c.clone(),
        forward: Move::Gather,
        backward: Move::ReduceScatter,
    })
}

/// `s`'s f32 values under `l` (contiguous), in GPU memory.
#[cfg(feature = "cuda")]
fn cuda_values<'a>(s: &'a CudaStorage, l: &Layout, op: &str) -> Result<CudaView<'a, f32>> {
    let Some((from, to)) = l.contiguous_offsets() else {
        bail!("{op}: a tensor that is not contiguous");
    };
    Ok(s.as_cuda_slice::<f32>()?.slice(from..to))
}

/// The three collectives as tensor operations without a backward of their
/// own, on the CPU and on a GPU.
#[derive(Clone, Copy)]
enum Move {
    Gather,
    ReduceScatter,
    AllReduce,
}

struct Collect(Arc<dyn Collective>, Move);

impl Collect {
    /// The output's shape: rows times the world (gather), over it
    /// (reduce-scatter), or the same.
    fn shape(&self, l: &Layout) -> Result<Shape> {
        let mut dims = l.dims().to_vec();
        let world = self.0.world();
        match (self.1, dims.first_mut()) {
            (Move::AllReduce, _) => {}
            (_, None) => bail!("{}: a scalar has no rows", self.name()),
            (Move::Gather, Some(rows)) => *rows *= world,
            (Move::ReduceScatter, Some(rows)) => {
                if !rows.is_multiple_of(world) {
                    bail!("{}: {rows} rows over {world} ranks", self.name());
                }
                *rows /= world;
            }
        }
        Ok(Shape::from(dims))
    }
}

impl CustomOp1 for Collect {
    fn name(&self) -> &'static str {
        match self.1 {
            Move::Gather => "wit-all-gather",
            Move::ReduceScatter => "wit-reduce-scatter",
            Move::AllReduce => "wit-all-reduce",
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let v = crate::model::fused::values(s, l, self.name())?;
        let out = match self.1 {
            Move::Gather => self.0.all_gather(v)?,
            Move::ReduceScatter => self.0.reduce_scatter_sum(v)?,
            Move::AllReduce => {
                let mut v = v.to_vec();
                self.0.all_reduce_sum(&mut v)?;
                v
            }
        };
        Ok((CpuStorage::F32(out), self.shape(l)?))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let v = cuda_values(s, l, self.name())?;
        let out = match self.1 {
            Move::Gather => self.0.all_gather_cuda(&v, &s.device)?,
            Move::ReduceScatter => self.0.reduce_scatter_sum_cuda(&v, &s.device)?,
            Move::AllReduce => self.0.all_reduce_sum_cuda(&v, &s.device)?,
        };
        Ok((
            CudaStorage::wrap_cuda_slice(out, s.device.clone()),
            self.shape(l)?,
        ))
    }
}

/// `t` (f32) moved by `what` across the ranks of `c`, without a gradient.
fn collect(t: &Tensor, c: &Arc<dyn Collective>, what: Move) -> Result<Tensor> {
    t.contiguous()?.apply_op1_no_bwd(&Collect(c.clone(), what))
}

/// A collective with a gradient: `forward` moves the values, `backward`
/// moves the gradient back (a gather's is a reduce-scatter, an
/// all-reduce's an all-reduce).
struct WithGrad {
    c: Arc<dyn Collective>,
    forward: Move,
    backward: Move,
}

impl CustomOp1 for WithGrad {
    fn name(&self) -> &'static str {
        match self.forward {
            Move::Gather => "wit-all-gather-with-grad",
            Move::ReduceScatter => "wit-reduce-scatter-with-grad",
            Move::AllReduce => "wit-all-reduce-with-grad",
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        Collect(self.c.clone(), self.forward).cpu_fwd(s, l)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        Collect(self.c.clone(), self.forward).cuda_fwd(s, l)
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(collect(
            &grad.to_dtype(DType::F32)?,
            &self.c,
            self.backward,
        )?))
    }
}

/// `t` summed over ranks (every rank the same shape), f32; its backward
/// sums the gradient over ranks too, as [`gather_with_grad`]'s does, so
/// that after [`average_gradients`] each rank has the one-process
/// gradient.
///
/// # Errors
/// A tensor that is not f32, or the transport's.
pub fn all_reduce_with_grad(t: &Tensor, c: &Arc<dyn Collective>) -> Result<Tensor> {
    if c.world() == 1 {
        return Ok(t.clone());
    }
    t.contiguous()?.apply_op1(WithGrad {
        c: c.clone(),
        forward: Move::AllReduce,
        backward: Move::AllReduce,
    })
}

thread_local! {
    static BATCH_NORM_SYNC: std::cell::RefCell<Option<Arc<dyn Collective>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` (a training forward pass) with batch norm's statistics taken
/// over the global batch: every rank's rows (PyTorch's `SyncBatchNorm`,
/// OpenCLIP's `--use-bn-sync`), so that the ResNets train on many ranks
/// as on one process. Applies to this thread, for the duration of `f`.
pub fn with_synchronised_batch_norm<R>(c: &Arc<dyn Collective>, f: impl FnOnce() -> R) -> R {
    let before = BATCH_NORM_SYNC.with(|s| s.replace(Some(c.clone())));
    let out = f();
    BATCH_NORM_SYNC.with(|s| *s.borrow_mut() = before);
    out
}

/// The collective batch norm takes its statistics over, inside
/// [`with_synchronised_batch_norm`] with more than one rank.
pub(crate) fn batch_norm_sync() -> Option<Arc<dyn Collective>> {
    BATCH_NORM_SYNC.with(|s| s.borrow().clone().filter(|c| c.world() > 1))
}

/// CLIP's contrastive loss over the global batch, from this rank's
/// L2-normalised `images` and `texts` (n x d, row i of each a pair; every
/// rank the same n) at temperature `exp(log_scale)`.
///
/// Without `local_loss`, every rank computes the whole loss over the
/// gathered (world · n) x (world · n) logits. With it, this rank's rows
/// against every column (n x world · n, the labels offset by rank · n):
/// the mean of those cross-entropies, whose mean over ranks is the whole
/// loss (OpenCLIP's `--local-loss`; less memory and compute per rank for
/// the same gradient). In a world of one both are [`contrastive_loss`].
///
/// # Errors
/// Candle's errors, or the transport's.
pub fn clip_loss(
    images: &Tensor,
    texts: &Tensor,
    log_scale: &Tensor,
    c: &Arc<dyn Collective>,
    local_loss: bool,
) -> Result<Tensor> {
    if c.world() == 1 {
        return contrastive_loss(images, texts, log_scale);
    }
    let (all_images, all_texts) = (gather_with_grad(images, c)?, gather_with_grad(texts, c)?);
    if !local_loss {
        return contrastive_loss(&all_images, &all_texts, log_scale);
    }
    let n = images.dim(0)?;
    let scale = log_scale.to_dtype(images.dtype())?.exp()?;
    let offset = (c.rank() * n) as u32;
    let labels = Tensor::arange(offset, offset + n as u32, images.device())?.reshape((n, 1))?;
    let cross_entropy = |rows: &Tensor, columns: &Tensor| -> Result<Tensor> {
        let logits = rows.matmul(&columns.t()?)?.broadcast_mul(&scale)?;
        let logp = logits.broadcast_sub(&layers::log_sum_exp(&logits)?)?;
        logp.gather(&labels, 1)?.mean_all()?.neg()
    };
    (cross_entropy(images, &all_texts)? + cross_entropy(texts, &all_images)?)? / 2.0
}

/// Replaces each gradient of `params` in `grads` with its mean over ranks
/// (one all-reduce of all of them); a parameter without a gradient counts
/// as zeros, and gets the mean. A no-op in a world of one.
///
/// # Errors
/// Candle's errors, or the transport's.
pub fn average_gradients(
    grads: &mut GradStore,
    params: &[(String, Var)],
    c: &Arc<dyn Collective>,
) -> Result<()> {
    if c.world() == 1 {
        return Ok(());
    }
    // One all-reduce of every gradient, flattened, where they are (NCCL
    // keeps them in GPU memory).
    let mut flat = Vec::with_capacity(params.len());
    for (_, var) in params {
        let t = var.as_tensor();
        flat.push(match grads.get(t) {
            Some(g) => g.to_dtype(DType::F32)?.flatten_all()?,
            None => Tensor::zeros(t.elem_count(), DType::F32, t.device())?,
        });
    }
    let sum = collect(&Tensor::cat(&flat, 0)?, c, Move::AllReduce)?;
    let mean = (sum * (1.0 / c.world() as f64))?;
    let mut at = 0;
    for (_, var) in params {
        let t = var.as_tensor();
        let n = t.elem_count();
        let g = mean
            .narrow(0, at, n)?
            .reshape(t.shape())?
            .to_dtype(t.dtype())?;
        at += n;
        grads.insert(t, g);
    }
    Ok(())
}

/// The mean over ranks of a value each rank has (a loss, for the log).
///
/// # Errors
/// The transport's.
pub fn mean_over_ranks(value: f32, c: &Arc<dyn Collective>) -> Result<f32> {
    let mut v = [value];
    c.all_reduce_sum(&mut v)?;
    Ok(v[0] / c.world() as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn ranks_come_from_the_launcher_that_set_them() {
        assert_eq!(Ranks::from_vars(vars(&[])).unwrap(), Ranks::single());
        let srun = vars(&[
            ("SLURM_PROCID", "3"),
            ("SLURM_NTASKS", "4"),
            ("SLURM_LOCALID", "1"),
        ]);
        assert_eq!(
            Ranks::from_vars(srun).unwrap(),
            Ranks {
                rank: 3,
                world: 4,
                local_rank: 1
            }
        );
        // mpirun inside a Slurm allocation: Open MPI's numbers win over
        // the allocation's.
        let mpirun = vars(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "8"),
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
        ]);
        assert_eq!(
            Ranks::from_vars(mpirun).unwrap(),
            Ranks {
                rank: 1,
                world: 2,
                local_rank: 1
            }
        );
        let torchrun = vars(&[
            ("RANK", "5"),
            ("WORLD_SIZE", "6"),
            ("OMPI_COMM_WORLD_RANK", "0"),
        ]);
        assert_eq!(Ranks::from_vars(torchrun).unwrap().rank, 5);
        let bad = Ranks::from_vars(vars(&[("RANK", "2"), ("WORLD_SIZE", "2")])).unwrap_err();
        assert!(
            bad.contains("RANK=2") && bad.contains("WORLD_SIZE=2"),
            "{bad}"
        );
        let nan = Ranks::from_vars(vars(&[("SLURM_PROCID", "x"), ("SLURM_NTASKS", "2")]));
        assert!(nan.unwrap_err().contains("SLURM_PROCID"));
    }

    #[test]
    fn a_world_of_one_needs_no_transport_and_changes_nothing() {
        let c = connect(Ranks::single(), &Device::Cpu, Backend::Auto).unwrap();
        assert_eq!((c.rank(), c.world()), (0, 1));
        let t = Tensor::new(&[[1f32, 2.], [3., 4.]], &candle_core::Device::Cpu).unwrap();
        assert_eq!(
            gather_with_grad(&t, &c).unwrap().to_vec2::<f32>().unwrap(),
            t.to_vec2::<f32>().unwrap()
        );
        assert_eq!(mean_over_ranks(2.5, &c).unwrap(), 2.5);
    }

    #[cfg(not(feature = "mpi"))]
    #[test]
    fn many_ranks_without_mpi_say_how_to_build_it() {
        let e = connect(
            Ranks {
                rank: 1,
                world: 2,
                local_rank: 0,
            },
            &Device::Cpu,
            Backend::Auto,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.contains("rank 1 of 2") && e.contains("--features mpi"),
            "{e}"
        );
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn nccl_without_cuda_says_how_to_build_it() {
        let e = connect(Ranks::single(), &Device::Cpu, Backend::Nccl)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("--features cuda"), "{e}");
    }
}
