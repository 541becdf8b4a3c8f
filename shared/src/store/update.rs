//! An update expression built clause by clause, so a write that sets or
//! removes attributes depending on what changed reads as a list of changes.

use aws_sdk_dynamodb::types::builders::UpdateBuilder;
use aws_sdk_dynamodb::types::AttributeValue;

#[derive(Default)]
pub(crate) struct UpdateExpr {
    set: Vec<&'static str>,
    remove: Vec<&'static str>,
    names: Vec<(&'static str, &'static str)>,
    values: Vec<(&'static str, AttributeValue)>,
}

impl UpdateExpr {
    /// A `SET` clause and the value its placeholder stands for.
    pub fn set(&mut self, clause: &'static str, placeholder: &'static str, value: AttributeValue) {
        self.set.push(clause);
        self.value(placeholder, value);
    }

    /// A `SET` clause whose values are bound separately (or that has none).
    pub fn set_clause(&mut self, clause: &'static str) {
        self.set.push(clause);
    }

    pub fn remove(&mut self, attribute: &'static str) {
        self.remove.push(attribute);
    }

    pub fn value(&mut self, placeholder: &'static str, value: AttributeValue) {
        self.values.push((placeholder, value));
    }

    /// DynamoDB refuses names an expression does not use: bind only those
    /// the clauses need.
    pub fn name(&mut self, placeholder: &'static str, attribute: &'static str) {
        self.names.push((placeholder, attribute));
    }

    /// `SET clause = value` when there is a value, else `REMOVE attribute`.
    pub fn set_or_remove(
        &mut self,
        clause: &'static str,
        placeholder: &'static str,
        attribute: &'static str,
        value: Option<AttributeValue>,
    ) {
        match value {
            Some(v) => self.set(clause, placeholder, v),
            None => self.remove(attribute),
        }
    }

    pub fn apply(self, mut update: UpdateBuilder) -> UpdateBuilder {
        let mut expression = format!("SET {}", self.set.join(", "));
        if !self.remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", self.remove.join(", ")));
        }
        update = update.update_expression(expression);
        for (k, v) in self.names {
            update = update.expression_attribute_names(k, v);
        }
        for (k, v) in self.values {
            update = update.expression_attribute_values(k, v);
        }
        update
    }
}
