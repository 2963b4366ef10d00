"""Provides the dashboard's widgets: charts, status line, parameter table, prediction viewer."""
