//! Where sequences sit in a per-slot KV cache.
//!
//! With one KV stream per sequence, llama.cpp splits a batch into one micro-batch per run
//! of consecutive sequence ids (`split_equal` with `sequential`), and each micro-batch
//! reads every weight once more. Running sequences in slots {0, 2, 5} make a decode step
//! three forward passes instead of one: on a 2-core machine four streams decoded at
//! 43 tokens/s instead of 61 once earlier requests had left caches in scattered slots.
//! So new sequences take slots that keep the running ones in one run, and when a
//! sequence in the middle ends, the last one moves into its place.

/// How many runs of consecutive running slots there are.
pub(super) fn runs(running: &[bool]) -> usize {
    running
        .iter()
        .enumerate()
        .filter(|&(i, &r)| r && (i == 0 || !running[i - 1]))
        .count()
}

/// The free slots a new sequence may take without splitting the running ones more than
/// any other free slot would: those that leave the fewest runs.
pub(super) fn packed_slots(running: &[bool]) -> Vec<usize> {
    let mut with = running.to_vec();
    let mut scored = Vec::new();
    for i in (0..running.len()).filter(|&i| !running[i]) {
        with[i] = true;
        scored.push((runs(&with), i));
        with[i] = false;
    }
    let fewest = scored.iter().map(|&(r, _)| r).min();
    scored
        .into_iter()
        .filter(|&(r, _)| Some(r) == fewest)
        .map(|(_, i)| i)
        .collect()
}

/// The move that joins the running slots into fewer runs: the last running slot goes to
/// the first free slot before it. None when they already form one run.
pub(super) fn compaction(running: &[bool]) -> Option<(usize, usize)> {
    if runs(running) <= 1 {
        return None;
    }
    let first = running.iter().position(|&r| r)?;
    let last = running.iter().rposition(|&r| r)?;
    let hole = (first..last).find(|&i| !running[i])?;
    Some((last, hole))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(s: &str) -> Vec<bool> {
        s.chars().map(|c| c == 'x').collect()
    }

    #[test]
    fn runs_count_groups_of_adjacent_running_slots() {
        assert_eq!(runs(&slots("....")), 0);
        assert_eq!(runs(&slots("xx..")), 1);
        assert_eq!(runs(&slots(".xx.")), 1);
        assert_eq!(runs(&slots("x.x.")), 2);
        assert_eq!(runs(&slots("x.x.x")), 3);
    }

    #[test]
    fn a_new_sequence_extends_the_running_block_or_fills_a_hole() {
        // From idle any slot keeps one run.
        assert_eq!(packed_slots(&slots("....")), vec![0, 1, 2, 3]);
        // Next to the block, on either side.
        assert_eq!(packed_slots(&slots(".xx...")), vec![0, 3]);
        // A hole joins two runs into one; nothing else does.
        assert_eq!(packed_slots(&slots("x.xx..")), vec![1]);
        assert_eq!(packed_slots(&slots("xxxx")), Vec::<usize>::new());
    }

    #[test]
    fn compaction_moves_the_last_running_slot_into_the_first_hole() {
        assert_eq!(compaction(&slots("xx..")), None);
        assert_eq!(compaction(&slots("..xx")), None);
        assert_eq!(compaction(&slots("x.xx")), Some((3, 1)));
        assert_eq!(compaction(&slots("x...x")), Some((4, 1)));
        // Repeated, the moves end in one run.
        let mut running = slots("x.x.x.x");
        while let Some((from, to)) = compaction(&running) {
            running.swap(from, to);
        }
        assert_eq!(running, slots("xxxx..."));
    }
}
