//! The hostile fixture's many-memories variant: a plugin whose every memory is small but whose
//! memories together are more than an instance may have.
//!
//! A Rust plugin has one linear memory; a component may hold any number of core modules, each
//! with memories of its own. [`many_memories`] takes a built component, prints it as text, and
//! adds `count` core modules of one memory of `mib` MiB each, instantiated with the component
//! (so they are made, and counted, when it is instantiated): the component still implements its
//! world and behaves as before while its memories are small enough.

/// `component` with `count` more core instances, each with one memory of `mib` MiB.
///
/// # Panics
/// When `component` is not a component that prints and parses back (a test's setup error).
pub fn many_memories(component: &[u8], count: usize, mib: u32) -> Vec<u8> {
    let text = wasmprinter::print_bytes(component).expect("the component prints as text");
    // Added last, so that the indices the printed text refers to by number stay what they are.
    let body = text
        .trim_end()
        .strip_suffix(')')
        .expect("a printed component ends with `)`");
    let pages = mib * 16; // 64 KiB pages
    let mut extra = String::new();
    for i in 0..count {
        extra.push_str(&format!(
            "  (core module $omni_test_memory_{i} (memory {pages}))\n  \
             (core instance $omni_test_memory_instance_{i} (instantiate $omni_test_memory_{i}))\n"
        ));
    }
    wat::parse_str(format!("{body}\n{extra})")).expect("the spliced component parses")
}
