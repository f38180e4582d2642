//! How a read-model table is described: its columns, key and indexes, once for both backends,
//! and the DDL of one of its generations (`schema` creates and swaps them). The [`table!`]
//! macro declares a table and the row type its projection writes in one place.

use crate::db::Val;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Col {
    Text,
    TextNull,
    Int,
    IntNull,
}

/// The column type of a row field's Rust type.
pub(crate) trait Column: Into<Val> {
    const COL: Col;
}

impl Column for String {
    const COL: Col = Col::Text;
}

impl Column for Option<String> {
    const COL: Col = Col::TextNull;
}

impl Column for i64 {
    const COL: Col = Col::Int;
}

impl Column for Option<i64> {
    const COL: Col = Col::IntNull;
}

/// A row of a read-model table, as its projection writes it: one field per column, in order.
pub(crate) trait TableRow {
    const TABLE: Table;
    /// The row's values, in column order.
    fn values(self) -> Vec<Val>;
}

/// Declares a read-model table and its row type together, so the columns, their types and the
/// values a write binds cannot drift apart:
///
/// ```text
/// table! {
///     /// One row per thing.
///     pub(crate) struct Thing as THINGS = "things" {
///         thing_id: String,
///         seen_at: Option<i64>,
///     }
///     key (thing_id)
///     indexes { seen (seen_at, thing_id), }
///     write_indexes ()
/// }
/// ```
///
/// The field types give the column types ([`Column`]); the index names are suffixes of the
/// physical index names; `write_indexes` are those the projection's own writes need (see
/// [`Table::write_indexes`]).
macro_rules! table {
    (
        $(#[$meta:meta])*
        $vis:vis struct $row:ident as $table:ident = $name:literal {
            $($(#[$col_meta:meta])* $col:ident: $ty:ty,)+
        }
        key ($($key:ident),+)
        indexes { $($index:ident ($($indexed:ident),+),)* }
        write_indexes ($($write:ident),*)
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        $vis struct $row {
            $($(#[$col_meta])* pub(crate) $col: $ty,)+
        }

        $vis const $table: $crate::table::Table = $crate::table::Table {
            name: $name,
            columns: &[$((stringify!($col), <$ty as $crate::table::Column>::COL),)+],
            key: &[$(stringify!($key)),+],
            indexes: &[$((stringify!($index), &[$(stringify!($indexed)),+]),)*],
            write_indexes: &[$(stringify!($write)),*],
        };

        impl $crate::table::TableRow for $row {
            const TABLE: $crate::table::Table = $table;

            fn values(self) -> Vec<$crate::db::Val> {
                vec![$($crate::db::Val::from(self.$col)),+]
            }
        }
    };
}

pub(crate) use table;

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

    /// The indexes a rebuild adds after its bulk load (see [`Table::write_indexes`]).
    pub(crate) fn deferred_indexes(&self, generation: i64) -> Vec<String> {
        self.create_indexes(generation, |suffix| !self.write_indexes.contains(&suffix))
    }

    pub(crate) fn drop(&self, generation: i64) -> String {
        format!("DROP TABLE IF EXISTS {}", self.physical(generation))
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

#[cfg(test)]
mod tests {
    use super::*;

    table! {
        struct Thing as THINGS = "things" {
            thing_id: String,
            label: Option<String>,
            seen: i64,
            left: Option<i64>,
        }
        key (thing_id)
        indexes {
            seen (seen, thing_id),
        }
        write_indexes (seen)
    }

    #[test]
    fn a_declared_table_has_its_rows_fields_as_columns_in_order() {
        assert_eq!(
            THINGS.columns,
            &[
                ("thing_id", Col::Text),
                ("label", Col::TextNull),
                ("seen", Col::Int),
                ("left", Col::IntNull),
            ]
        );
        assert_eq!(
            (THINGS.key, THINGS.write_indexes),
            (&["thing_id"][..], &["seen"][..])
        );
        assert_eq!(THINGS.indexes, &[("seen", &["seen", "thing_id"][..])]);
        let thing = Thing {
            thing_id: "t".into(),
            label: None,
            seen: 3,
            left: Some(4),
        };
        assert_eq!(
            thing.values(),
            vec![
                Val::from("t"),
                Val::Text(None),
                Val::from(3),
                Val::from(Some(4))
            ]
        );
    }
}
