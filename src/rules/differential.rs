//! The YAML fast path held to its contract, for the differential tests
//! (`yaml/proptests.rs`) and the `rules_fast_path` fuzz target: not part of
//! portgate's interface.

use super::{load, yaml};

/// Checks the fast path against saphyr on `text`: when the fast path takes
/// the text, its tree must be saphyr's (values and positions), and the
/// loader's answer — the ruleset and warnings, or every diagnostic — must
/// be the same with and without the fast path. Returns whether the fast
/// path took the text, or what differed.
pub fn check(text: &str) -> Result<bool, String> {
    let fast = yaml::parse_fast(text);
    let accepted = fast.is_some();
    if let Some(tree) = &fast {
        match yaml::parse_saphyr(text) {
            Ok((slow, problems)) if problems.is_empty() && &slow == tree => {}
            other => {
                return Err(format!(
                    "the fast path took {text:?} as\n{tree:#?}\nbut saphyr gives\n{other:#?}"
                ));
            }
        }
    }
    let with = load::load(text, "d.yaml");
    let without = load::load_saphyr_only(text, "d.yaml");
    let same = match (&with, &without) {
        (Ok(a), Ok(b)) => {
            a.ruleset == b.ruleset && a.warnings == b.warnings && a.more_warnings == b.more_warnings
        }
        (Err(a), Err(b)) => a == b,
        _ => false,
    };
    if !same {
        return Err(format!(
            "{text:?} loads differently with the fast path:\n{with:#?}\nand without:\n{without:#?}"
        ));
    }
    Ok(accepted)
}
