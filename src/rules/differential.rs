//! The YAML fast path held to its contract, for the differential tests
//! (`yaml/proptests.rs`) and the `rules_fast_path` fuzz target: not part of
//! portgate's interface.

use super::{load, yaml};

/// Checks the fast path against saphyr on `text`: when the fast path takes
/// the text, its tree must be saphyr's (values and positions), and the
/// loader's answer — the ruleset and warnings, or every diagnostic — must
/// be the same with and without the fast path, and the same site by site
/// as from the whole tree. Returns whether the fast path took the text, or
/// what differed.
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
    let whole = load::load_whole_tree(text, "d.yaml");
    if !same(&with, &without) {
        return Err(format!(
            "{text:?} loads differently with the fast path:\n{with:#?}\nand without:\n{without:#?}"
        ));
    }
    if !same(&without, &whole) {
        return Err(format!(
            "{text:?} loads differently site by site:\n{without:#?}\nand from the whole tree:\n{whole:#?}"
        ));
    }
    Ok(accepted)
}

fn same(
    a: &Result<load::Loaded, load::LoadError>,
    b: &Result<load::Loaded, load::LoadError>,
) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => {
            a.ruleset == b.ruleset && a.warnings == b.warnings && a.more_warnings == b.more_warnings
        }
        (Err(a), Err(b)) => a == b,
        _ => false,
    }
}
