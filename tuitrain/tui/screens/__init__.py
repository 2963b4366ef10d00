"""Provides the app's screens: setup, dashboard, dialogs and the parameter drill-down."""
