"""activemil.acquisition"""
