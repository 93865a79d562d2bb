//! Running the loaded balancer on a frame with `BPF_PROG_TEST_RUN`.

use std::time::Duration;

use aya::programs::{TestRun as _, TestRunOptions, Xdp};

use crate::error::DataplaneError;

/// What the program returned for a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunResult {
    /// The `xdp_action` number.
    pub action: u32,
    /// The frame as the program left it.
    pub frame: Vec<u8>,
    /// The kernel's average time per repetition.
    pub duration: Duration,
}

/// Runs one of the loaded XDP programs on frames, in the kernel, without
/// a network. Borrowing it does not stop the maps being programmed.
pub struct Runner<'a> {
    pub(crate) program: &'a Xdp,
    pub(crate) name: &'static str,
}

impl<'a> Runner<'a> {
    /// A runner for any loaded XDP program, not only this crate's: the
    /// benches time other balancers the same way. `name` labels errors.
    pub fn for_program(program: &'a Xdp, name: &'static str) -> Self {
        Self { program, name }
    }

    /// Runs the program once on `frame`.
    pub fn run(&self, frame: &[u8]) -> Result<RunResult, DataplaneError> {
        self.run_repeated(frame, 1)
    }

    /// Runs the program `repeat` times on `frame` in one call. The kernel
    /// does not restore the frame between repetitions.
    pub fn run_repeated(&self, frame: &[u8], repeat: u32) -> Result<RunResult, DataplaneError> {
        // Room for the largest outer header the balancer pushes.
        let mut out = vec![0u8; frame.len() + 64];
        let result = self
            .program
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                repeat,
                ..TestRunOptions::default()
            })
            .map_err(|source| DataplaneError::Program {
                program: self.name,
                op: "test run",
                source,
            })?;
        out.truncate(result.data_size_out as usize);
        Ok(RunResult {
            action: result.return_value,
            frame: out,
            duration: result.duration,
        })
    }
}
