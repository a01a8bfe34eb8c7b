//! An in-memory store for tests and simulations.

use crate::{Mutation, Record, Store, StoreError};
use berth_core::state::Kind;
use std::collections::BTreeMap;

/// Records in a map; "durable" for as long as the value lives.
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    records: BTreeMap<(Kind, String), Vec<u8>>,
}

impl Store for MemStore {
    fn load(&mut self) -> Result<Vec<Record>, StoreError> {
        Ok(self
            .records
            .iter()
            .map(|((kind, key), body)| Record {
                kind: *kind,
                key: key.clone(),
                body: body.clone(),
            })
            .collect())
    }

    fn commit(&mut self, batch: &[Mutation]) -> Result<(), StoreError> {
        for m in batch {
            match m {
                Mutation::Put(r) => {
                    self.records.insert((r.kind, r.key.clone()), r.body.clone());
                }
                Mutation::Delete { kind, key } => {
                    self.records.remove(&(*kind, key.clone()));
                }
            }
        }
        Ok(())
    }

    fn reset(&mut self) -> Result<(), StoreError> {
        self.records.clear();
        Ok(())
    }
}
