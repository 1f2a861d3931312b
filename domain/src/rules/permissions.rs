//! Roles, permissions and the modules each role sees: the one role→permission
//! table of DOMAIN.md. The API asks here; apps ask the API (`GET /api/v1/me`).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Manager,
    Cashier,
    ProductionWorker,
    Auditor,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Admin, Role::Manager, Role::Cashier, Role::ProductionWorker, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Manager => "manager",
            Role::Cashier => "cashier",
            Role::ProductionWorker => "production_worker",
            Role::Auditor => "auditor",
        }
    }

    /// The permissions this role holds. Admin holds every permission.
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Admin => Permission::ALL,
            Role::Manager => &[
                SalesView,
                SalesCreate,
                SalesComplete,
                PaymentsCreate,
                ProductsView,
                ProductsEdit,
                ProductionView,
                ProductionCreate,
                ProductionAssign,
                ProductionCosts,
                WorkerStepsView,
                WorkerStepsUpdate,
                AccountingView,
                AccountingCreate,
                ReportsAdvanced,
            ],
            Role::Cashier => &[SalesView, SalesCreate, SalesComplete, PaymentsCreate, ProductsView],
            Role::ProductionWorker => &[WorkerStepsView, WorkerStepsUpdate],
            Role::Auditor => &[AccountingView, ReportsAdvanced],
        }
    }

    pub fn can(self, permission: Permission) -> bool {
        self.permissions().contains(&permission)
    }

    /// The app modules to show this role, derived from its permissions.
    pub fn modules(self) -> Vec<Module> {
        Module::ALL.iter().copied().filter(|m| self.can(m.requires())).collect()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role '{0}': expected one of admin, manager, cashier, production_worker, auditor")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownRole(s.chars().take(40).collect()))
    }
}

/// A permission, named `module.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    SalesView,
    SalesCreate,
    SalesComplete,
    PaymentsCreate,
    ProductsView,
    ProductsEdit,
    ProductionView,
    ProductionCreate,
    ProductionAssign,
    ProductionCosts,
    WorkerStepsView,
    WorkerStepsUpdate,
    AccountingView,
    AccountingCreate,
    ReportsAdvanced,
    BusinessManage,
    SocialView,
}

impl Permission {
    pub const ALL: &'static [Permission] = &[
        Permission::SalesView,
        Permission::SalesCreate,
        Permission::SalesComplete,
        Permission::PaymentsCreate,
        Permission::ProductsView,
        Permission::ProductsEdit,
        Permission::ProductionView,
        Permission::ProductionCreate,
        Permission::ProductionAssign,
        Permission::ProductionCosts,
        Permission::WorkerStepsView,
        Permission::WorkerStepsUpdate,
        Permission::AccountingView,
        Permission::AccountingCreate,
        Permission::ReportsAdvanced,
        Permission::BusinessManage,
        Permission::SocialView,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::SalesView => "sales.view",
            Permission::SalesCreate => "sales.create",
            Permission::SalesComplete => "sales.complete",
            Permission::PaymentsCreate => "payments.create",
            Permission::ProductsView => "products.view",
            Permission::ProductsEdit => "products.edit",
            Permission::ProductionView => "production.view",
            Permission::ProductionCreate => "production.create",
            Permission::ProductionAssign => "production.assign",
            Permission::ProductionCosts => "production.costs",
            Permission::WorkerStepsView => "worker.steps.view",
            Permission::WorkerStepsUpdate => "worker.steps.update",
            Permission::AccountingView => "accounting.view",
            Permission::AccountingCreate => "accounting.create",
            Permission::ReportsAdvanced => "reports.advanced",
            Permission::BusinessManage => "business.manage",
            Permission::SocialView => "social.view",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Permission {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A module of the staff apps; shown when the role holds the module's permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Module {
    Sales,
    Products,
    Production,
    Worker,
    Accounting,
    Reports,
    Social,
    Settings,
}

impl Module {
    pub const ALL: [Module; 8] = [
        Module::Sales,
        Module::Products,
        Module::Production,
        Module::Worker,
        Module::Accounting,
        Module::Reports,
        Module::Social,
        Module::Settings,
    ];

    pub fn requires(self) -> Permission {
        match self {
            Module::Sales => Permission::SalesView,
            Module::Products => Permission::ProductsView,
            Module::Production => Permission::ProductionView,
            Module::Worker => Permission::WorkerStepsView,
            Module::Accounting => Permission::AccountingView,
            Module::Reports => Permission::ReportsAdvanced,
            Module::Social => Permission::SocialView,
            Module::Settings => Permission::BusinessManage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::*;

    #[test]
    fn admin_holds_every_permission() {
        for p in Permission::ALL {
            assert!(Role::Admin.can(*p), "admin lacks {p}");
        }
    }

    #[test]
    fn only_admin_manages_the_business_and_sees_social() {
        for role in Role::ALL {
            assert_eq!(role.can(BusinessManage), role == Role::Admin, "{role}");
            assert_eq!(role.can(SocialView), role == Role::Admin, "{role}");
        }
    }

    #[test]
    fn cashier_sells_and_views_products_only() {
        let mut held: Vec<_> = Role::Cashier.permissions().iter().map(|p| p.as_str()).collect();
        held.sort();
        assert_eq!(held, ["payments.create", "products.view", "sales.complete", "sales.create", "sales.view"]);
    }

    #[test]
    fn worker_only_touches_its_steps() {
        assert_eq!(Role::ProductionWorker.permissions(), &[WorkerStepsView, WorkerStepsUpdate]);
        assert!(!Role::ProductionWorker.can(ProductionCosts));
        assert_eq!(Role::ProductionWorker.modules(), vec![Module::Worker]);
    }

    #[test]
    fn auditor_is_read_only() {
        for p in Role::Auditor.permissions() {
            assert!(matches!(p, AccountingView | ReportsAdvanced), "auditor holds {p}");
        }
        assert_eq!(Role::Auditor.modules(), vec![Module::Accounting, Module::Reports]);
    }

    #[test]
    fn manager_costs_steps_and_reads_reports_but_does_not_manage() {
        for p in [ProductionCosts, ReportsAdvanced, AccountingCreate, WorkerStepsView, ProductsEdit] {
            assert!(Role::Manager.can(p), "{p}");
        }
    }

    #[test]
    fn permission_names_are_module_dot_action_and_unique() {
        let mut names: Vec<_> = Permission::ALL.iter().map(|p| p.as_str()).collect();
        assert!(names.iter().all(|n| n.contains('.')));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Permission::ALL.len());
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
