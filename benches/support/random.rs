//! Random bench inputs, filled on every core: the GEMM and convolution benches upload hundreds of
//! millions of values per shape, which one thread takes seconds of GPU-machine time to draw.

use rand::Rng;
use rayon::prelude::*;

/// `len` values uniform in [-r, r), each made by `to` from an f32.
pub fn uniform<E: bytemuck::Pod + Send>(
    len: usize,
    r: f32,
    to: impl Fn(f32) -> E + Sync,
) -> Vec<E> {
    let mut host = vec![E::zeroed(); len];
    host.par_chunks_mut(1 << 16).for_each(|chunk| {
        let mut rng = rand::rng();
        chunk
            .iter_mut()
            .for_each(|x| *x = to(rng.random_range(-r..r)));
    });
    host
}
