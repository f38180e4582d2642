//! How a read-model table is described: its columns, key and indexes, once for both backends,
//! and the DDL of one of its generations (`schema` creates and swaps them).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Col {
    Text,
    TextNull,
    Int,
    IntNull,
}

/// One read-model table, described once for both backends.
#[derive(Debug)]
pub(crate) struct Table {
    /// Also the name of the view on the current generation.
    pub name: &'static str,
    pub columns: &'static [(&'static str, Col)],
    pub key: &'static [&'static str],
    /// Index name suffix and columns.
    pub indexes: &'static [(&'static str, &'static [&'static str])],
    /// The suffixes of the indexes the projection's own writes look rows up by. A rebuild
    /// creates these with the table and the others after the bulk load (one sort instead of a
    /// million B-tree inserts).
    pub write_indexes: &'static [&'static str],
}

impl Table {
    pub fn physical(&self, generation: i64) -> String {
        format!("{}_g{generation}", self.name)
    }

    pub fn column_names(&self) -> Vec<&'static str> {
        self.columns.iter().map(|(name, _)| *name).collect()
    }

    /// The DDL of the table's `generation`; `int` is the dialect's integer type.
    pub(crate) fn create(&self, int: &str, generation: i64, indexes: Indexes) -> Vec<String> {
        let table = self.physical(generation);
        let mut columns: Vec<String> = self
            .columns
            .iter()
            .map(|(name, col)| match col {
                Col::Text => format!("{name} text NOT NULL"),
                Col::TextNull => format!("{name} text"),
                Col::Int => format!("{name} {int} NOT NULL"),
                Col::IntNull => format!("{name} {int}"),
            })
            .collect();
        columns.push(format!("PRIMARY KEY ({})", self.key.join(", ")));
        let mut ddl = vec![format!("CREATE TABLE {table} ({})", columns.join(", "))];
        ddl.extend(self.create_indexes(generation, |suffix| match indexes {
            Indexes::All => true,
            Indexes::ForWrites => self.write_indexes.contains(&suffix),
        }));
        ddl
    }

    pub(crate) fn create_indexes(
        &self,
        generation: i64,
        wanted: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let table = self.physical(generation);
        // Index names are per schema on PostgreSQL, hence the generation in them.
        self.indexes
            .iter()
            .filter(|(suffix, _)| wanted(suffix))
            .map(move |(suffix, columns)| {
                format!(
                    "CREATE INDEX {table}_{suffix} ON {table} ({})",
                    columns.join(", ")
                )
            })
            .collect()
    }
}

/// Which secondary indexes a new generation gets with its tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Indexes {
    All,
    /// Only those the projection's writes need; `create_deferred_indexes` adds the rest.
    ForWrites,
}
