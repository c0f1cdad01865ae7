//! Power-loss trials over the catalog: collections created and dropped
//! (each new one with an acknowledged write) under injected faults and
//! simulated power cuts, through `CrashFs`. After every recovery the
//! catalog opens, every acknowledged create and drop holds, the one
//! operation a fault cut short is wholly there or wholly not, and a
//! collection recreated under an old name never shows the old one's data.

use quarry_engine::collection::Op;
use quarry_engine::storage::{CrashFs, Fault};
use quarry_engine::Metric;
use quarry_server::catalog::{Catalog, IndexParams, Residency};
use quarry_server::live::WriteSettings;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::BTreeMap;
use std::sync::Arc;

const DIM: u32 = 4;
const NAMES: [&str; 4] = ["a", "b", "c", "d"];

fn vector(g: u64) -> Vec<f32> {
    (0..DIM).map(|i| (g * 10 + i as u64) as f32).collect()
}

fn open(fs: &Arc<dyn quarry_engine::storage::Vfs>, data: &std::path::Path) -> Result<Catalog, String> {
    Catalog::open_on(fs.clone(), data, 0, 1 << 30, 1, WriteSettings::default()).map_err(|e| e.to_string())
}

/// Create `name` and write id `g` into it; Ok only if both were
/// acknowledged.
fn create(cat: &Catalog, name: &str, g: u64) -> Result<(), String> {
    cat.create(name, DIM, Metric::L2, IndexParams::default(), None, Residency::Disk)
        .map_err(|e| e.to_string())?;
    let live = cat.get(name).map_err(|e| e.to_string())?.live.clone();
    live.write(
        vec![Op::Upsert {
            id: g,
            vector: vector(g),
            payload: vec![],
        }],
        None,
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// The catalog holds exactly `model` (name → the id written at its
/// create), and no collection shows an id of an earlier incarnation.
fn check(cat: &Catalog, model: &BTreeMap<String, u64>, gens: u64, trial: u64) {
    let names: Vec<String> = cat.list().iter().map(|e| e.meta.read().unwrap().name.clone()).collect();
    assert_eq!(
        names,
        model.keys().cloned().collect::<Vec<_>>(),
        "trial {trial}: the collections"
    );
    for (name, &g) in model {
        let live = cat.get(name).unwrap().live.clone();
        assert_eq!(live.coll.len(), 1, "trial {trial}: {name} holds one vector");
        assert_eq!(
            live.coll.get(g).unwrap().map(|x| x.0),
            Some(vector(g)),
            "trial {trial}: {name}'s acknowledged write"
        );
        for old in (0..gens).filter(|&o| o != g) {
            assert!(
                live.coll.get(old).unwrap().is_none(),
                "trial {trial}: {name} shows id {old} of another incarnation"
            );
        }
    }
}

#[test]
fn power_loss_trials_keep_the_catalog_before_or_after_each_create_and_drop() {
    let trials = CrashFs::trials("QUARRY_CATALOG_TRIALS", 60);
    let d = tempfile::tempdir().unwrap();
    let (mut creates, mut drops, mut cut_short) = (0u64, 0u64, 0u64);
    for trial in 0..trials {
        let root = d.path().join(format!("t{}", trial % 3));
        let (cfs, fs) = CrashFs::fresh(&root);
        let data = root.join("data");
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(trial ^ 0xca7a);
        let mut model: BTreeMap<String, u64> = BTreeMap::new();
        let mut gens = 0u64;
        // (name, its state if the cut-short operation took effect).
        let mut pending: Option<(String, Option<u64>)> = None;
        for life in 0..3 {
            let cat =
                open(&fs, &data).unwrap_or_else(|e| panic!("trial {trial} life {life}: the catalog did not open: {e}"));
            if let Some((name, effect)) = pending.take() {
                let now = cat.get(&name).ok().map(|e| {
                    let live = e.live.clone();
                    (0..gens).find(|&g| live.coll.get(g).unwrap().is_some())
                });
                let before = model.get(&name).copied();
                match now {
                    None => {
                        assert!(
                            before.is_none() || effect.is_none(),
                            "trial {trial}: {name} vanished without a drop"
                        );
                        model.remove(&name);
                    }
                    Some(found) => {
                        // A create cut short after its collection.json
                        // became durable but before its write did: the
                        // collection exists, empty.
                        assert!(
                            found == before || found == effect || (found.is_none() && effect.is_some()),
                            "trial {trial}: {name} is neither before ({before:?}) nor after ({effect:?}): {found:?}"
                        );
                        match found {
                            Some(g) => model.insert(name.clone(), g),
                            None => {
                                // Drop it so the model stays simple.
                                cat.drop_collection(&name).unwrap();
                                model.remove(&name)
                            }
                        };
                    }
                }
            }
            check(&cat, &model, gens, trial);
            if life == 2 {
                break;
            }
            let mut fault = Fault::random(&mut rng, 0..120);
            fault.persistent = rng.random_bool(0.7);
            cfs.set_fault(Some(fault));
            for _ in 0..rng.random_range(2..12) {
                let name = NAMES[rng.random_range(0..NAMES.len())].to_string();
                let r = if model.contains_key(&name) {
                    drops += 1;
                    cat.drop_collection(&name).map_err(|e| e.to_string()).map(|_| None)
                } else {
                    creates += 1;
                    gens += 1;
                    create(&cat, &name, gens - 1).map(|_| Some(gens - 1))
                };
                match r {
                    Ok(Some(g)) => {
                        model.insert(name, g);
                    }
                    Ok(None) => {
                        model.remove(&name);
                    }
                    Err(_) => {
                        cut_short += 1;
                        let effect = if model.contains_key(&name) {
                            None
                        } else {
                            Some(gens - 1)
                        };
                        pending = Some((name, effect));
                        break;
                    }
                }
            }
            cfs.crash();
            drop(cat);
            cfs.power_loss(trial * 3 + life, true).unwrap();
        }
    }
    eprintln!("catalog trials: {trials}, creates {creates}, drops {drops}, cut short by a fault {cut_short}");
    assert!(
        cut_short > 0 && creates > 0 && drops > 0,
        "the trials exercised every path"
    );
}
